"""The load of ``bin/chaos``: clients that each keep one new sign-up in flight, and what they
saw (``Tally``)."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import ensureDeferred

from chaos.probes import sleep

REQUEST_TIMEOUT = 10.0
ANSWER_LIMIT = 12.0
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman"]
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def signup(rng: random.Random, client: int, n: int) -> bytes:
    """A new, realistic sign-up; unique per client and request."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    tag = f"{client}x{n}"
    return json.dumps(
        {
            "firstName": first,
            "lastName": last,
            "email": f"{first}.{last}.{tag}@example.org".lower(),
            "username": f"{first[0]}{last}{tag}".lower(),
            "password": f"pw-{rng.getrandbits(64):016x}",
        }
    ).encode()


@dataclass
class Tally:
    """What the clients saw."""

    acknowledged: list[ObjectId] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    longest_answer: float = 0.0
    over_limit: int = 0
    timeouts: int = 0
    no_retry_after: int = 0

    def answered(self, status: int, took: float) -> None:
        self.outcomes[str(status)] += 1
        self.longest_answer = max(self.longest_answer, took)
        self.over_limit += took > ANSWER_LIMIT

    def failed(self, error: BaseException) -> None:
        if isinstance(error, defer.TimeoutError):
            self.timeouts += 1
            self.outcomes[f"no answer within {REQUEST_TIMEOUT:g} s"] += 1
        else:
            self.outcomes[_describe(error)] += 1


def _describe(error: BaseException) -> str:
    # treq wraps connection failures (ResponseNeverReceived([Failure(...)])): name the cause.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return f"{type(error).__name__}({type(reasons[0].value).__name__})"
    return type(error).__name__


async def client(
    reactor: Any, http: HTTPClient, url: str, until: float, tally: Tally, index: int
) -> None:
    """One client: a new sign-up as soon as the previous one is answered, until ``until``."""
    rng = random.Random(index)
    n = 0
    while reactor.seconds() < until:
        n += 1
        started = reactor.seconds()

        async def exchange(body: bytes) -> tuple[int, bytes, bool]:
            response = await http.post(url + "/users", data=body, headers=JSON_HEADERS)
            retry_after = response.headers.hasHeader(b"retry-after")
            return int(response.code), await response.content(), retry_after

        attempt = ensureDeferred(exchange(signup(rng, index, n)))
        # Our own timer covers the whole exchange, body included (treq's stops at headers).
        attempt.addTimeout(REQUEST_TIMEOUT, reactor)
        tally.sent += 1
        try:
            status, body, retry_after = await attempt
        except Exception as error:
            tally.failed(error)
            await sleep(reactor, 0.1)  # squad is down: do not spin on refused connections
            continue
        tally.answered(status, reactor.seconds() - started)
        if status == 503 and not retry_after:
            tally.no_retry_after += 1
        if status == 201:
            tally.acknowledged.append(ObjectId(json.loads(body)["_id"]))
        else:
            await sleep(reactor, 0.1)
