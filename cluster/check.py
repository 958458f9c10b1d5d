"""``bin/cluster --check``: a rolling restart under load fails no request, and an instance
SIGKILLed under load loses nothing acknowledged.

The cluster (N instances, short lease and slow step so it runs in about a minute) gets a small
load through nginx: ``CLIENTS`` clients, each with one new sign-up at a time (with an
``Idempotency-Key``, as a retrying client would send), in two parts.

1. The rolling restart: at ``ROLLING_RATE`` sign-ups a second (what the cluster answers
   easily, so that a 503 would be the restart's doing), and ``ROLL_AFTER`` seconds into it,
   every instance is replaced in turn (what SIGHUP to ``bin/cluster`` does,
   ``cluster.rolling``); the load goes on until ``TAIL`` seconds after the last one. Every
   answer must be a 201, and nginx must have sent no request to a second instance (its
   ``retried.log``): the drain, not a retry, keeps it clean.
2. The crash: for ``LOAD_SECONDS``, and part-way through, instance 1 is SIGKILLed (its whole
   process group) while it holds users mid slow step. nginx retries a request that died with
   the instance on another instance, so clients see no error from the kill itself.

Then every acknowledged user of both parts must be in the database (lost: 0) and
``processed: true`` within ``PROCESSED_LIMIT`` seconds of the end of the load: the restarted
instances hand their work back as they stop, and the others take the dead one's over once its
lease lapses.

Exit status 0 only when every check passed.
"""

from __future__ import annotations

import json
import random
import re
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymongo
from bson import ObjectId
from treq.client import HTTPClient
from twisted.internet import defer, task, threads
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from cluster.parts import say
from cluster.processes import Cluster
from cluster.rolling import Outcome
from harness.processes import descendants
from harness.signups import new_signup

CLIENTS = 20
LOAD_SECONDS = 15.0
KILL_AFTER = 5.0
ROLL_AFTER = 2.0
# Below what the cluster answers on a small machine (about 135/s with 20 clients unpaced on a
# shared 2-core one): a 503 then means the restart got in the way, not that the load was too
# much.
ROLLING_RATE = 100.0
TAIL = 2.0
# The load of the rolling part stops here even if the restart has not finished.
ROLLING_LIMIT = 90.0
# With the check's 5 s lease a take-over starts within 1.25 s; a cluster that needs longer
# fails the check rather than keep CI waiting.
TAKEOVER_LIMIT = 20.0
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
    # When each answer other than 201 came (wall clock), to set beside the restart's log.
    failed_at: list[float] = field(default_factory=list)

    def failures(self) -> str:
        if not self.failed_at:
            return "none"
        first, last = min(self.failed_at), max(self.failed_at)
        return (
            f"{len(self.failed_at)} from {time.strftime('%H:%M:%S', time.localtime(first))} "
            f"to {time.strftime('%H:%M:%S', time.localtime(last))}"
        )


def _status(code: int, body: bytes) -> str:
    """``201``, or the status and squad's error code (``503 overloaded``) when it gave one."""
    if code == 201:
        return "201"
    try:
        return f"{code} {json.loads(body)['error']}"
    except (ValueError, KeyError, TypeError):
        return str(code)


async def client(
    reactor: Any,
    http: HTTPClient,
    url: str,
    number: int,
    going: Callable[[], bool],
    tally: Tally,
    pace: float = 0.0,
) -> None:
    """Sign-ups one after the other while ``going()``, starting one at most every ``pace``
    seconds."""
    rng = random.Random(number)
    n = 0
    while going():
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
                data=new_signup(rng, number, n),
                headers=headers,
                timeout=REQUEST_TIMEOUT,
            )
            body = await response.content()
            tally.statuses[_status(response.code, body)] += 1
            if response.code != 201:
                tally.failed_at.append(time.time())
            if response.code == 201:
                tally.acknowledged.append(ObjectId(json.loads(body)["_id"]))
                if tally.killed_at is not None:
                    tally.after_kill += 1
            elif response.code == 503:
                await task.deferLater(reactor, 0.2, lambda: None)
        except Exception as error:
            tally.statuses[type(error).__name__] += 1
            tally.failed_at.append(time.time())
            await task.deferLater(reactor, 0.2, lambda: None)
        tally.longest = max(tally.longest, reactor.seconds() - started)
        rest = started + pace - reactor.seconds()
        if rest > 0:
            await task.deferLater(reactor, rest, lambda: None)


async def clients(
    reactor: Any,
    http: HTTPClient,
    url: str,
    going: Callable[[], bool],
    tally: Tally,
    rate: float | None = None,
) -> None:
    """``CLIENTS`` clients, together at most ``rate`` sign-ups a second (as fast as answered
    when None)."""
    pace = 0.0 if rate is None else CLIENTS / rate
    await defer.gatherResults(
        [
            ensureDeferred(client(reactor, http, url, number, going, tally, pace))
            for number in range(CLIENTS)
        ]
    )


def retried_requests(cluster: Cluster) -> int:
    """Requests nginx has sent to more than one instance so far (its ``retried.log``)."""
    try:
        with open(cluster.nginx.folder / "retried.log", "rb") as log:
            return sum(1 for _ in log)
    except FileNotFoundError:
        return 0


@dataclass
class Rolling:
    """What the rolling part saw: its answers, the restart's outcome, the requests nginx sent to
    a second instance meanwhile, and the pids of the instances replaced."""

    tally: Tally
    outcome: Outcome
    retried: int
    replaced_pids: list[int]


async def rolling_part(reactor: Any, cluster: Cluster, http: HTTPClient) -> Rolling:
    """Paced load, and a rolling restart of every instance ``ROLL_AFTER`` seconds into it."""
    tally = Tally()
    retried = retried_requests(cluster)
    pids = [child.process.pid for child in cluster.squads]
    started: float = reactor.seconds()
    finished: list[float] = []

    async def restart() -> Outcome:
        await task.deferLater(reactor, ROLL_AFTER, lambda: None)
        # It blocks (it starts processes and waits for them): a thread, so the load goes on.
        outcome: Outcome = await threads.deferToThread(cluster.rolling_restart)
        finished.append(reactor.seconds())
        return outcome

    def going() -> bool:
        now: float = reactor.seconds()
        if finished:
            return now < finished[0] + TAIL
        return now < started + ROLLING_LIMIT

    restarting = ensureDeferred(restart())
    await clients(reactor, http, cluster.url, going, tally, ROLLING_RATE)
    outcome = await restarting
    replaced = [pid for pid in pids if pid not in {c.process.pid for c in cluster.squads}]
    return Rolling(tally, outcome, retried_requests(cluster) - retried, replaced)


async def kill_part(reactor: Any, cluster: Cluster, http: HTTPClient, mongo: Any) -> Tally:
    """Load as fast as answered for ``LOAD_SECONDS``, and a SIGKILL of the first instance."""
    tally = Tally()
    until = reactor.seconds() + LOAD_SECONDS

    def kill() -> None:
        doomed = cluster.squads[0]
        # Work is owned by the processes that serve: the instance's workers, named
        # host:pid:..., under its twistd parent.
        pids = [doomed.process.pid, *descendants(doomed.process.pid)]
        owners = "^" + re.escape(socket.gethostname()) + ":(" + "|".join(map(str, pids)) + "):"
        # A batch's work is in its sealed_passwords document (its steps too, for a batch of
        # its own) and, for work it adopted, a pending one: each lists its users.
        tally.held_by_killed = len(
            {
                user_id
                for name in ("pending", "sealed_passwords")
                for batch in mongo[DATABASE][name].find({"owner": {"$regex": owners}}, {"users": 1})
                for user_id in batch.get("users", [])
            }
        )
        doomed.kill(signal.SIGKILL)
        tally.killed_at = reactor.seconds()
        say(
            f"check: SIGKILLed {doomed.name} (pid {doomed.process.pid}) holding "
            f"{tally.held_by_killed} users' work"
        )

    killing = task.deferLater(reactor, KILL_AFTER, kill)
    await clients(reactor, http, cluster.url, lambda: reactor.seconds() < until, tally)
    await killing
    return tally


async def load(
    reactor: Any, cluster: Cluster, mongo: pymongo.MongoClient[Any]
) -> tuple[Rolling, Tally]:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CLIENTS
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        say(
            f"check: {CLIENTS} clients through {cluster.url}, {ROLLING_RATE:g} sign-ups/s; a "
            f"rolling restart of the {cluster.instances} instances after {ROLL_AFTER:g} s"
        )
        rolling = await rolling_part(reactor, cluster, http)
        say(
            f"check: {CLIENTS} clients for {LOAD_SECONDS:g} s; SIGKILL of "
            f"{cluster.squads[0].name} after {KILL_AFTER:g} s"
        )
        killed = await kill_part(reactor, cluster, http, mongo)
    finally:
        await pool.closeCachedConnections()
    return rolling, killed


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
    cluster.takeover_limit = TAKEOVER_LIMIT
    cluster.start()
    mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(
        cluster.mongo_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=20000
    )
    try:
        from twisted.internet import reactor

        result: list[tuple[Rolling, Tally]] = []
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
        rolling, tally = result[0]
        ids = rolling.tally.acknowledged + tally.acknowledged
        stored, processed, waited = wait_processed(mongo, ids)
    finally:
        mongo.close()
    lost = len(ids) - stored
    answers = rolling.tally.statuses
    print(
        f"rolling restart: {rolling.outcome.replaced} of {rolling.outcome.instances} instances "
        f"replaced in {rolling.outcome.seconds:.1f} s; acknowledged "
        f"{len(rolling.tally.acknowledged)}, answers {dict(sorted(answers.items()))}, longest "
        f"answer {rolling.tally.longest:.2f} s; failed {rolling.tally.failures()}; requests "
        f"nginx retried {rolling.retried}\n"
        f"kill: acknowledged {len(tally.acknowledged)} ({tally.after_kill} after the kill), "
        f"answers {dict(sorted(tally.statuses.items()))}, longest answer {tally.longest:.2f} s; "
        f"killed instance held {tally.held_by_killed} users' work\n"
        f"both: lost {lost}; processed {processed}/{len(ids)} {waited:.0f} s after the load",
        flush=True,
    )
    checks = {
        "rolling restart: every instance replaced": rolling.outcome.complete
        and len(rolling.replaced_pids) == cluster.instances,
        "rolling restart: every answer 201, none failed": set(answers) == {"201"},
        "rolling restart: no request sent to a second instance": rolling.retried == 0,
        "nothing acknowledged lost": lost == 0,
        f"all processed within {PROCESSED_LIMIT:g} s": processed == len(ids),
        "the killed instance held work": tally.held_by_killed > 0,
        "sign-ups acknowledged after the kill": tally.after_kill > 0,
    }
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}", flush=True)
    return 0 if all(checks.values()) else 1
