"""``bin/cluster --check``: an instance SIGKILLed under load loses nothing acknowledged.

The cluster (N instances, short lease and slow step so it runs in about a minute) gets a small
bounded load through nginx: ``CLIENTS`` clients, each keeping one new sign-up (with an
``Idempotency-Key``, as a retrying client would send) in flight for ``LOAD_SECONDS``. Part-way
through, instance 1 is SIGKILLed (its whole process group) while it holds users mid slow step.
Then every acknowledged user must be in the database (lost: 0) and ``processed: true`` within
``PROCESSED_LIMIT`` seconds of the end of the load: the other instances take the dead one's
work over once its lease lapses. nginx retries a request that died with the instance on
another instance, so clients see no error from the kill itself.

Exit status 0 only when nothing acknowledged was lost and everything was processed in time.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pymongo
from bson import ObjectId
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from cluster.processes import Cluster, say

CLIENTS = 20
LOAD_SECONDS = 15.0
KILL_AFTER = 5.0
PROCESSED_LIMIT = 90.0
REQUEST_TIMEOUT = 10.0
# Short enough that the check runs in about a minute; long enough that at the kill the doomed
# instance holds users mid slow step.
CHECK_SQUAD_ARGS = ["--lease-seconds", "5", "--slow-min", "3", "--slow-max", "8"]
DATABASE = "squad"


@dataclass
class Tally:
    acknowledged: list[ObjectId] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    longest: float = 0.0
    after_kill: int = 0
    killed_at: float | None = None
    held_by_killed: int = 0


def signup(rng: random.Random, client: int, n: int) -> bytes:
    tag = f"{client}x{n}x{rng.randrange(16**6):06x}"
    return json.dumps(
        {
            "firstName": "Katherine",
            "lastName": "Johnson",
            "email": f"katherine.{tag}@example.org",
            "username": f"kjohnson{tag}",
            "password": "trajectory-1962",
        }
    ).encode()


async def client(
    reactor: Any, http: HTTPClient, url: str, number: int, until: float, tally: Tally
) -> None:
    rng = random.Random(number)
    n = 0
    while reactor.seconds() < until:
        n += 1
        started = reactor.seconds()
        # A new key per sign-up, as a client that retries would send: nginx may resend it.
        headers: dict[bytes | str, bytes | str] = {
            b"Content-Type": b"application/json",
            b"Idempotency-Key": uuid.uuid4().hex.encode(),
        }
        try:
            response = await http.post(
                url + "/users",
                data=signup(rng, number, n),
                headers=headers,
                timeout=REQUEST_TIMEOUT,
            )
            body = await response.content()
            tally.statuses[str(response.code)] += 1
            if response.code == 201:
                tally.acknowledged.append(ObjectId(json.loads(body)["_id"]))
                if tally.killed_at is not None:
                    tally.after_kill += 1
            elif response.code == 503:
                await task.deferLater(reactor, 0.2, lambda: None)
        except Exception as error:
            tally.statuses[type(error).__name__] += 1
            await task.deferLater(reactor, 0.2, lambda: None)
        tally.longest = max(tally.longest, reactor.seconds() - started)


async def load(reactor: Any, cluster: Cluster, mongo: pymongo.MongoClient[Any]) -> Tally:
    tally = Tally()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CLIENTS
    http = HTTPClient(Agent(reactor, pool=pool))
    until = reactor.seconds() + LOAD_SECONDS

    def kill() -> None:
        doomed = cluster.squads[0]
        owner = f"{socket.gethostname()}:{doomed.process.pid}:"
        # One pending document per batch of slow steps, listing its users.
        tally.held_by_killed = sum(
            len(batch.get("users", []))
            for batch in mongo[DATABASE].pending.find(
                {"owner": {"$regex": "^" + owner.replace(".", "\\.")}}, {"users": 1}
            )
        )
        doomed.kill(signal.SIGKILL)
        tally.killed_at = reactor.seconds()
        say(
            f"check: SIGKILLed {doomed.name} (pid {doomed.process.pid}) holding "
            f"{tally.held_by_killed} users' pending work"
        )

    killing = task.deferLater(reactor, KILL_AFTER, kill)
    await defer.gatherResults(
        [
            ensureDeferred(client(reactor, http, cluster.url, number, until, tally))
            for number in range(CLIENTS)
        ]
    )
    await killing
    await pool.closeCachedConnections()
    return tally


def wait_processed(mongo: pymongo.MongoClient[Any], ids: list[ObjectId]) -> tuple[int, int, float]:
    """(stored, processed, seconds waited) once all are processed or the limit passed."""
    users = mongo[DATABASE].users
    started = time.monotonic()
    while True:
        stored = processed = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            stored += users.count_documents({"_id": {"$in": chunk}})
            processed += users.count_documents({"_id": {"$in": chunk}, "processed": True})
        waited = time.monotonic() - started
        if processed == len(ids) or waited > PROCESSED_LIMIT:
            return stored, processed, waited
        time.sleep(1.0)


def run_check(cluster: Cluster) -> int:
    # The check's settings first: arguments given after -- still win (twistd keeps the last).
    cluster.squad_args = CHECK_SQUAD_ARGS + cluster.squad_args
    cluster.start()
    mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(
        cluster.mongo_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=20000
    )
    try:
        say(
            f"check: {CLIENTS} clients for {LOAD_SECONDS:g} s through {cluster.url}; "
            f"SIGKILL of squad-1 after {KILL_AFTER:g} s"
        )
        from twisted.internet import reactor

        result: list[Tally] = []
        failure: list[BaseException] = []

        def go() -> None:
            d = ensureDeferred(load(reactor, cluster, mongo))
            d.addCallbacks(result.append, lambda f: failure.append(f.value))
            d.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(go)
        # Our own SIGINT/SIGTERM handlers stay: they stop the whole cluster.
        reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
        if failure:
            raise failure[0]
        tally = result[0]
        ids = tally.acknowledged
        stored, processed, waited = wait_processed(mongo, ids)
    finally:
        mongo.close()
    lost = len(ids) - stored
    print(
        f"acknowledged {len(ids)} ({tally.after_kill} after the kill), answers "
        f"{dict(sorted(tally.statuses.items()))}, longest answer {tally.longest:.2f} s\n"
        f"killed instance held {tally.held_by_killed} users' work; lost {lost}; processed "
        f"{processed}/{len(ids)} {waited:.0f} s after the load",
        flush=True,
    )
    checks = {
        "nothing acknowledged lost": lost == 0,
        f"all processed within {PROCESSED_LIMIT:g} s": processed == len(ids),
        "the killed instance held work": tally.held_by_killed > 0,
        "sign-ups acknowledged after the kill": tally.after_kill > 0,
    }
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}", flush=True)
    return 0 if all(checks.values()) else 1
