"""Load plus faults: SIGKILL and restart of squad, then of the database, under load.

Everything runs on 127.0.0.1 and stops by itself: a private database (``bin/db`` on a free port,
a temporary folder), squad as real processes (``--workers 2``), N clients each keeping one
sign-up in flight for the duration. Then it waits (at most 90 s) until every acknowledged user
is processed and prints: acknowledged, lost, processed, the longest answer time, and how long
``/ready`` took to answer 204 after the database came back. Exit status 0 only when nothing was
lost, everything was processed, no answer took over 12 s and readiness returned within 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import treq
from bson import ObjectId
from twisted.internet import defer, task, threads
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "squad_chaos"
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
SURNAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signup(rng: random.Random, n: int) -> bytes:
    first, last = rng.choice(NAMES), rng.choice(SURNAMES)
    return json.dumps(
        {
            "firstName": first,
            "lastName": last,
            "email": f"{first}.{last}{n}@example.org".lower(),
            "username": f"{first}{last}{n}".lower()[:32],
            "password": f"pw-{rng.getrandbits(64):x}",
        }
    ).encode()


@dataclass
class Tally:
    acknowledged: list[ObjectId] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    longest: float = 0.0
    over_12s: int = 0


class Processes:
    """The database and squad as process groups we can kill and restart."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.db_port = free_port()
        self.http_port = free_port()
        self.db: subprocess.Popen[bytes] | None = None
        self.squad: subprocess.Popen[bytes] | None = None
        self.logs = open(os.path.join(workdir, "processes.log"), "ab")  # noqa: SIM115

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.db_port}"

    def start_db(self) -> None:
        self.db = subprocess.Popen(
            [
                str(ROOT / "bin" / "db"),
                "--port",
                str(self.db_port),
                "--data",
                os.path.join(self.workdir, "db"),
            ],
            stdout=self.logs,
            stderr=self.logs,
            start_new_session=True,
        )

    def start_squad(self) -> None:
        self.squad = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted",
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
                "--allow-flush",
                "--seal-key-file",
                os.path.join(self.workdir, "seal.key"),
            ],
            cwd=ROOT,
            stdout=self.logs,
            stderr=self.logs,
            start_new_session=True,
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for process in (self.squad, self.db):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(process)
        self.logs.close()


def count_users(uri: str, ids: list[ObjectId]) -> tuple[int, int]:
    """(stored, processed) among ``ids``."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=10_000
    )
    try:
        # One read of every user (FerretDB filters $in in memory anyway): which exist, which
        # are processed.
        seen = {
            doc["_id"]: bool(doc.get("processed"))
            for doc in client[DATABASE].users.find({}, {"processed": 1})
        }
        stored = sum(1 for user_id in ids if user_id in seen)
        processed = sum(1 for user_id in ids if seen.get(user_id))
        return stored, processed
    finally:
        client.close()


async def sleep(reactor: Any, seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def wait_http(reactor: Any, http: Any, url: str, status: int, limit: float) -> float:
    """Seconds until ``url`` answers ``status`` (raises after ``limit``)."""
    started = reactor.seconds()
    while reactor.seconds() - started < limit:
        try:
            response = await http.get(url, timeout=2)
            await response.content()
            if response.code == status:
                return float(reactor.seconds() - started)
        except Exception:
            pass
        await sleep(reactor, 0.2)
    raise RuntimeError(f"{url} did not answer {status} within {limit:g} s")


async def client(reactor: Any, http: Any, url: str, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while reactor.seconds() < until:
        n += 1
        started = reactor.seconds()
        try:
            response = await http.post(
                url + "/users",
                data=signup(rng, seed * 1_000_000 + n),
                headers=JSON_HEADERS,
                timeout=10,
            )
            body = await response.content()
            label = str(response.code)
            if response.code == 201:
                tally.acknowledged.append(ObjectId(json.loads(body)["_id"]))
        except Exception as error:
            label = type(error).__name__
            await sleep(reactor, 0.2)
        took = reactor.seconds() - started
        tally.longest = max(tally.longest, took)
        tally.over_12s += took > 12
        tally.statuses[label] = tally.statuses.get(label, 0) + 1


async def run(reactor: Any, options: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="squad-chaos-")
    procs = Processes(workdir)
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = treq.client.HTTPClient(Agent(reactor, pool=pool))
    url = f"http://127.0.0.1:{procs.http_port}"
    tally = Tally()
    try:
        procs.start_db()
        procs.start_squad()
        await wait_http(reactor, http, url + "/ready", 204, 60)
        print(f"chaos: {options.connections} clients for {options.duration:g} s against {url}")
        until = reactor.seconds() + options.duration
        clients = [
            ensureDeferred(client(reactor, http, url, until, tally, seed))
            for seed in range(options.connections)
        ]
        await sleep(reactor, options.duration * 0.25)
        print("chaos: SIGKILL squad (parent and workers), restart")
        procs.kill(procs.squad)
        procs.start_squad()
        await sleep(reactor, options.duration * 0.3)
        print("chaos: SIGKILL the database, restart in 2 s")
        procs.kill(procs.db)
        await sleep(reactor, 2)
        procs.start_db()
        ready_after = await wait_http(reactor, http, url + "/ready", 204, 60)
        print(f"chaos: /ready answered 204 {ready_after:.1f} s after the database restarted")
        await defer.gatherResults(clients)
        print("chaos: load over; waiting (at most 90 s) until every acknowledged user is processed")
        ids = tally.acknowledged
        waited = 0.0
        while True:
            # pymongo in a thread: this is the checker, not the service; it retries by itself
            # while the database settles after its restart.
            stored, processed = await threads.deferToThread(count_users, procs.uri, ids)
            print(f"chaos: {processed}/{len(ids)} processed, {stored} stored", flush=True)
            if processed == len(ids) or waited >= 90:
                break
            await sleep(reactor, 2)
            waited += 2
        lost = len(ids) - stored
        print(
            f"acknowledged {len(ids)}  lost {lost}  processed {processed}  not processed "
            f"{len(ids) - processed} (after {waited:.0f} s)  longest answer "
            f"{tally.longest:.2f} s  answers over 12 s {tally.over_12s}  ready after the "
            f"database returned {ready_after:.1f} s"
        )
        print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
        ok = lost == 0 and processed == len(ids) and tally.over_12s == 0 and ready_after <= 15
        print("chaos: PASS" if ok else "chaos: FAIL")
        return 0 if ok else 1
    finally:
        await pool.closeCachedConnections()
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bin/chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients (50)")
    options = parser.parse_args()

    async def go(reactor: Any) -> None:
        code = await run(reactor, options)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
