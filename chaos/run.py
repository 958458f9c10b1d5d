"""Load plus faults: SIGKILL and restart of squad, then of the database, under load.

Everything runs on 127.0.0.1 and stops by itself: a private database (``bin/db`` on a free
port, a temporary folder), squad as a real ``twistd`` process tree (``--workers 2``), and N
clients each keeping one new sign-up in flight for the duration. During the load squad (the
parent and its workers) is SIGKILLed once and restarted, and later the database is SIGKILLed
once and restarted on the same port and folder. Then it waits (at most 90 s) until every
acknowledged user is ``processed: true`` and prints: acknowledged, lost, processed, not
processed, the longest answer time, answers over 12 s, and how long ``/ready`` took to answer
204 after the database came back.

Exit status 0 only when nothing acknowledged was lost, everything was processed within 90 s, no
request was left unanswered (no answer over 12 s, no client timeout at 10 s) and readiness
returned within 15 s of the database.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import treq
from bson import ObjectId
from pymongo.errors import PyMongoError
from treq.client import HTTPClient
from twisted.internet import defer, task, threads
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "squad_chaos"
REQUEST_TIMEOUT = 10.0
ANSWER_LIMIT = 12.0
PROCESSED_LIMIT = 90.0
READY_LIMIT = 15.0
DATABASE_DOWN = 2.0
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman"]
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc: workers may outlive their group)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name (2nd field) may hold spaces; the parent pid follows ")".
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen[bytes] | None, number: int = signal.SIGKILL) -> None:
    """Send ``number`` to ``process``'s process group and every descendant of ``process``.

    The group outlives its leader: a worker whose parent exited is still reached through it.
    """
    if process is None:
        return
    below = descendants(process.pid) if process.poll() is None else []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


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


class Processes:
    """The database and squad, each a process group we can SIGKILL and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db_port = free_port()
        self.http_port = free_port()
        self.db: subprocess.Popen[bytes] | None = None
        self.squad: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.squad_log = open(workdir / "squad.log", "ab")  # noqa: SIM115 - closed in stop_all
        self.db_log = open(workdir / "db.log", "ab")  # noqa: SIM115 - closed in stop_all

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.db_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _note_groups(self) -> None:
        # bin/chaos's exit trap kills these process groups if we die before stop_all.
        live = [p.pid for p in (self.db, self.squad) if p is not None and p.poll() is None]
        (self.workdir / "pgids").write_text("".join(f"{pid}\n" for pid in live))

    def start_db(self) -> None:
        self.db = subprocess.Popen(
            [
                str(ROOT / "bin" / "db"),
                "--port",
                str(self.db_port),
                "--data",
                str(self.workdir / "db"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.db_log,
            stderr=self.db_log,
            start_new_session=True,
        )
        self._note_groups()

    def start_squad(self) -> None:
        twistd = Path(sys.executable).parent / "twistd"
        self.squad = subprocess.Popen(
            [
                str(twistd),
                "--pidfile=",
                "-n",
                "squad",
                "--port",
                f"tcp:{self.http_port}:interface=127.0.0.1",
                "--mongo-uri",
                self.uri,
                "--database",
                DATABASE,
                "--workers",
                "2",
                "--lease-seconds",
                "10",
                "--slow-min",
                "1",
                "--slow-max",
                "3",
                "--seal-key-file",
                str(self.workdir / "seal.key"),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.squad_log,
            stderr=self.squad_log,
            start_new_session=True,
            # Only what squad needs: a SQUAD_* variable of the caller must not change the run.
            env={k: v for k, v in os.environ.items() if not k.startswith("SQUAD_")},
        )
        self._note_groups()

    def kill_squad(self) -> None:
        kill_tree(self.squad)
        if self.squad is not None:
            self.squad.wait()
        self._note_groups()

    def kill_db(self) -> None:
        kill_tree(self.db)
        if self.db is not None:
            self.db.wait()
        self._note_groups()

    def stop_all(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call more than once."""
        if self.stopped:
            return
        self.stopped = True
        for process in (self.squad, self.db):
            if process is None:
                continue
            if process.poll() is None:
                kill_tree(process, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            kill_tree(process)  # the group too: a worker must not outlive its parent
            process.wait()
        self._note_groups()
        self.squad_log.close()
        self.db_log.close()


async def sleep(reactor: Any, seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def status_of(reactor: Any, url: str) -> int | None:
    """The status ``url`` answers with (a fresh connection, 2 s at most), None on failure."""
    try:
        response = await treq.get(url, persistent=False, timeout=2, reactor=reactor)
        await response.content()
        return int(response.code)
    except Exception:
        return None


async def wait_status(reactor: Any, url: str, status: int, limit: float) -> float:
    """Seconds until ``url`` answers ``status``; raises after ``limit``."""
    started = reactor.seconds()
    while reactor.seconds() - started < limit:
        if await status_of(reactor, url) == status:
            return float(reactor.seconds() - started)
        await sleep(reactor, 0.1)
    raise RuntimeError(f"{url} did not answer {status} within {limit:g} s")


async def wait_port(reactor: Any, port: int, limit: float) -> float:
    """Seconds until something accepts connections on 127.0.0.1:``port``."""
    started = reactor.seconds()

    def probe() -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    while reactor.seconds() - started < limit:
        if await threads.deferToThread(probe):
            return float(reactor.seconds() - started)
        await sleep(reactor, 0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {limit:g} s")


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


@dataclass
class Faults:
    """What the fault schedule measured."""

    squad_back: float | None = None
    ready_while_down: int | None = None
    db_back: float | None = None
    ready_after: float | None = None
    notes: list[str] = field(default_factory=list)


async def inject_faults(
    reactor: Any, procs: Processes, duration: float, say: Callable[[str], None]
) -> Faults:
    """SIGKILL squad at a quarter of the load, the database at 60 %, each restarted."""
    faults = Faults()
    started = reactor.seconds()
    await sleep(reactor, duration * 0.25)
    say("SIGKILL squad (parent and workers), restarting it")
    procs.kill_squad()
    killed = reactor.seconds()
    procs.start_squad()
    faults.squad_back = await wait_status(reactor, procs.url + "/health", 204, 60)
    say(f"squad serves again {reactor.seconds() - killed:.1f} s after the SIGKILL")

    await sleep(reactor, max(0.0, started + duration * 0.6 - reactor.seconds()))
    say(f"SIGKILL the database, restarting it in {DATABASE_DOWN:g} s")
    procs.kill_db()
    await sleep(reactor, DATABASE_DOWN / 2)
    faults.ready_while_down = await status_of(reactor, procs.url + "/ready")
    await sleep(reactor, DATABASE_DOWN / 2)
    procs.start_db()
    faults.db_back = await wait_port(reactor, procs.db_port, 60)
    faults.ready_after = await wait_status(reactor, procs.url + "/ready", 204, 60)
    say(
        f"the database accepts connections again ({faults.db_back:.1f} s after its restart); "
        f"/ready answered 204 {faults.ready_after:.2f} s later"
    )
    return faults


def unprocessed(mongo: pymongo.MongoClient[dict[str, Any]]) -> set[ObjectId]:
    """The ids of every stored user not processed yet (one read; the database is ours)."""
    return {doc["_id"] for doc in mongo[DATABASE].users.find({"processed": False}, {"_id": 1})}


def final_counts(mongo: pymongo.MongoClient[dict[str, Any]], ids: list[ObjectId]) -> Counter[str]:
    """How many of ``ids`` are stored and processed; what else is there."""
    seen = {
        doc["_id"]: bool(doc.get("processed"))
        for doc in mongo[DATABASE].users.find({}, {"processed": 1})
    }
    counts: Counter[str] = Counter()
    counts["stored"] = sum(1 for user_id in ids if user_id in seen)
    counts["processed"] = sum(1 for user_id in ids if seen.get(user_id))
    counts["unacknowledged stored"] = len(seen) - len(set(ids) & seen.keys())
    # Users whose slow step is still recorded as to do (one pending document per batch).
    counts["pending"] = sum(
        len(batch.get("users", [])) for batch in mongo[DATABASE].pending.find({}, {"users": 1})
    )
    return counts


async def run(reactor: Any, options: argparse.Namespace) -> int:
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="squad-chaos-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Processes(workdir)
    # Whatever way we end (an error, Ctrl-C stopping the reactor), nothing we started survives.
    reactor.addSystemEventTrigger("before", "shutdown", procs.stop_all)
    atexit.register(procs.stop_all)
    keep = False

    def say(text: str) -> None:
        print(f"chaos: [{reactor.seconds() - began:5.1f} s] {text}", flush=True)

    began = reactor.seconds()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = options.connections
    http = HTTPClient(Agent(reactor, pool=pool, connectTimeout=REQUEST_TIMEOUT))
    tally = Tally()
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        procs.uri, serverSelectionTimeoutMS=5_000, connect=False
    )
    try:
        say(f"database on {procs.uri}, squad on {procs.url}, logs in {workdir}")
        procs.start_db()
        await wait_port(reactor, procs.db_port, 60)
        procs.start_squad()
        await wait_status(reactor, procs.url + "/ready", 204, 60)
        say(f"{options.connections} clients for {options.duration:g} s")
        until = reactor.seconds() + options.duration
        load_started = reactor.seconds()
        clients = [
            ensureDeferred(client(reactor, http, procs.url, until, tally, index))
            for index in range(options.connections)
        ]
        faults = await inject_faults(reactor, procs, options.duration, say)
        await defer.gatherResults(clients)
        load_took = reactor.seconds() - load_started
        await pool.closeCachedConnections()
        ids = tally.acknowledged
        say(
            f"load over: {tally.sent} requests in {load_took:.1f} s, {len(ids)} acknowledged; "
            f"waiting (at most {PROCESSED_LIMIT:g} s) until every one is processed"
        )
        load_over = reactor.seconds()
        acknowledged = set(ids)
        while True:
            # pymongo in a thread: this is the checker, not the service. One light read every
            # few seconds: on FerretDB any read of users scans them all, and squad needs the
            # database more than we do.
            try:
                left = len(acknowledged & await threads.deferToThread(unprocessed, mongo))
            except PyMongoError as error:
                left = -1
                say(f"could not read the users: {error}")
            waited = reactor.seconds() - load_over
            if left == 0 or waited >= PROCESSED_LIMIT:
                break
            say(f"{len(ids) - left}/{len(ids)} processed")
            await sleep(
                reactor, max(0.1, min(3.0, load_over + PROCESSED_LIMIT - reactor.seconds()))
            )
        counts = await threads.deferToThread(final_counts, mongo, ids)

        lost = len(ids) - counts["stored"]
        not_processed = len(ids) - counts["processed"]
        ready_after = faults.ready_after if faults.ready_after is not None else float("inf")
        print(f"acknowledged        {len(ids)}")
        print(f"lost                {lost}")
        print(f"processed           {counts['processed']}")
        print(
            f"not processed       {not_processed}"
            + (f" (all processed {waited:.1f} s after the load)" if not not_processed else "")
        )
        print(f"longest answer      {tally.longest_answer:.2f} s")
        print(f"answers over {ANSWER_LIMIT:g} s  {tally.over_limit}")
        print(f"no answer in {REQUEST_TIMEOUT:g} s  {tally.timeouts}")
        print(f"503 w/o Retry-After {tally.no_retry_after}")
        print(
            f"ready after db back {ready_after:.2f} s (/ready while the database was down: "
            f"{faults.ready_while_down})"
        )
        print(
            f"also                {counts['unacknowledged stored']} stored users never "
            f"acknowledged (answers lost in the kill), {counts['pending']} pending work left"
        )
        print("answers             " + ", ".join(f"{k}: {v}" for k, v in tally.outcomes.items()))
        failures = []
        if lost:
            failures.append(f"{lost} acknowledged users lost")
        if not_processed:
            failures.append(f"{not_processed} not processed {PROCESSED_LIMIT:g} s after the load")
        if tally.over_limit or tally.timeouts:
            failures.append(f"{tally.over_limit + tally.timeouts} requests left unanswered")
        if ready_after > READY_LIMIT:
            failures.append(f"/ready took over {READY_LIMIT:g} s after the database came back")
        if tally.no_retry_after:
            failures.append(f"{tally.no_retry_after} answers 503 without Retry-After")
        if faults.ready_while_down != 503:
            failures.append(f"/ready answered {faults.ready_while_down} with the database down")
        keep = bool(failures) or options.keep
        print("chaos: PASS" if not failures else "chaos: FAIL: " + "; ".join(failures))
        return 1 if failures else 0
    except Exception:
        keep = True
        raise
    finally:
        mongo.close()
        procs.stop_all()
        if keep:
            (workdir / "keep").touch()
            print(f"chaos: logs kept in {workdir}", flush=True)
        elif not options.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bin/chaos",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Exit status 0 only when: " + (__doc__ or "").split("Exit status 0 only when")[-1],
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--workdir", help="folder for the database and logs (a temporary one)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and logs (kept anyway on failure)"
    )
    options = parser.parse_args()
    if options.duration < 5 or options.connections < 1:
        parser.error("--duration must be at least 5 s and --connections at least 1")

    async def go(reactor: Any) -> None:
        code = await run(reactor, options)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: ensureDeferred(go(reactor)))
