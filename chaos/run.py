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
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pymongo
from pymongo.errors import PyMongoError
from treq.client import HTTPClient
from twisted.internet import defer, task, threads
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from chaos.checks import PROCESSED_LIMIT, final_counts, unprocessed, verdict
from chaos.load import REQUEST_TIMEOUT, Tally, client
from chaos.probes import sleep, wait_port, wait_status
from chaos.schedule import inject_faults
from chaos.services import Processes


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

        failures = verdict(tally, faults, counts, waited)
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
