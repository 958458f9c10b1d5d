"""SIGHUP reloads a real ``twistd -n squad`` under load: every worker replaced, no request
lost or failed, the replaced workers' work taken over at once, ``/metrics`` still true; and a
replacement that cannot start leaves the old workers serving."""

from __future__ import annotations

import glob
import json
import os
import signal
import time
from datetime import datetime

from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.processes import children, environment
from squad.storage.store import Store
from tests.signups import signup
from tests.support import (
    JSON_HEADERS,
    SquadProcess,
    database_uri,
    eventually,
    mongo,
    own_database,
    request,
    sleep,
)


def metrics_folder(worker: int) -> str:
    """The metrics folder a worker writes in, from its environment."""
    folder = (environment(worker) or {}).get("PROMETHEUS_MULTIPROC_DIR")
    if folder is None:
        raise AssertionError(f"worker {worker} has no metrics folder")
    return folder


def counted_201s(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("squad_http_requests_total{") and 'route="/users",status="201"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class ReloadTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.uri = database_uri()
        self.database = own_database(self, "squad_reload")
        self.key_file = os.path.abspath(str(self.mktemp()) + ".key")

    def squad(self, options: str) -> SquadProcess:
        return SquadProcess(self, self.uri, self.database, self.key_file, *options.split())

    async def logged(self, squad: SquadProcess, text: str, limit: float) -> str:
        """The first log line holding ``text``, waiting up to ``limit`` seconds for it."""
        found: list[str] = []

        async def appeared() -> bool:
            with open(squad.log_path, errors="replace") as log:
                found[:] = [line for line in log if text in line]
            return bool(found)

        try:
            await eventually(appeared, limit, repr(text))
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{squad.log_tail()}") from None
        return found[0]

    async def test_sighup_under_load_replaces_every_worker_and_loses_nothing(self) -> None:
        """SIGHUP to twistd (--workers 2) while clients sign up, half of them on kept-alive
        connections: both workers are replaced by new processes, every request is answered
        201 (none refused, reset or failed), the log says when the reload started and that it
        ended, with its length. Every user is processed within seconds of the load's end,
        though the lease is 60 s: the replaced workers handed their work over. /metrics counts
        every 201 exactly once, and the metrics folder holds no file of a replaced worker."""
        squad = self.squad("--workers 2 --lease-seconds 60 --slow-min 0.2 --slow-max 0.5")
        await squad.ready()
        before = children(squad.pid)
        self.assertEqual(len(before), 2)

        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        kept_alive = HTTPClient(Agent(reactor, pool=pool))
        ids: list[ObjectId] = []
        failures: list[str] = []
        done: list[bool] = []

        async def client(index: int) -> None:
            for n in range(100_000):
                if done:
                    return
                body = json.dumps(signup(1000 * index + n)).encode()
                try:
                    if index % 2:
                        response = await kept_alive.post(
                            squad.url + "/users", data=body, headers=JSON_HEADERS, timeout=10
                        )
                        code, content = response.code, await response.content()
                    else:
                        answer = await request("POST", squad.url + "/users", json.loads(body))
                        code, content = answer.code, answer.body
                except Exception as error:
                    failures.append(repr(error))
                    continue
                if code != 201:
                    failures.append(f"{code} {content[:200]!r}")
                else:
                    ids.append(ObjectId(json.loads(content)["_id"]))
                await sleep(0.05)

        clients = [ensureDeferred(client(index)) for index in range(6)]
        await sleep(1.5)
        squad.signal(signal.SIGHUP)
        signalled = time.monotonic()
        started = await self.logged(squad, "Reload started", 5)
        ended = await self.logged(squad, "Reload done", 25)
        took = time.monotonic() - signalled
        await sleep(1.0)
        done.append(True)
        await DeferredList(clients)
        load_ended = time.monotonic()

        self.assertEqual(failures, [], squad.log_tail())
        self.assertGreater(len(ids), 50)
        self.assertIn("replacing 2 workers one at a time", started)
        self.assertRegex(ended, r"Reload done: 2 workers replaced in \d+\.\d s\.")
        self.assertLess(took, 25)
        after = children(squad.pid)
        self.assertEqual(len(after), 2, squad.log_tail())
        self.assertEqual(after & before, set(), "a worker was not replaced")

        pool_, db = await mongo(self.uri, self.database)
        self.addCleanup(pool_.disconnect)

        async def all_processed() -> bool:
            found = await db.users.count_documents(
                {"_id": {"$in": ids}, "processed": True}, timeout=5
            )
            return bool(found == len(ids))

        await eventually(all_processed, 15, "every user processed")
        # Far below the 60 s lease: the replaced workers' work was adopted at once.
        self.assertLess(time.monotonic() - load_ended, 15)

        metrics = await request("GET", squad.url + "/metrics")
        self.assertEqual(counted_201s(metrics.body.decode()), len(ids))
        folder = metrics_folder(sorted(after)[0])
        owners = {
            os.path.basename(path).rsplit("_", 1)[1][: -len(".db")]
            for path in glob.glob(os.path.join(folder, "*.db"))
        }
        self.assertEqual(owners, {"archive", *map(str, after)})

    async def test_a_replacement_that_cannot_start_stops_the_reload(self) -> None:
        """With --workers 1, a seal key file broken on disk makes the replacement fail: the
        reload stops with one line giving the reason, the old worker keeps serving. Once the
        file is mended, the next SIGHUP replaces the worker."""
        squad = self.squad("--workers 1 --slow-min 0.1 --slow-max 0.2")
        await squad.ready()
        [worker] = children(squad.pid)
        with open(self.key_file, "rb") as original:
            key = original.read()
        with open(self.key_file, "wb") as broken:
            broken.write(b"not a key")
        squad.signal(signal.SIGHUP)
        line = await self.logged(squad, "Reload stopped", 20)
        self.assertIn("the new worker 0 could not start (SealKeyError", line)
        self.assertIn("1 of 1 workers keep serving", line)
        self.assertEqual(children(squad.pid), {worker})
        self.assertEqual((await squad.post(1)).code, 201)

        with open(self.key_file, "wb") as mended:
            mended.write(key)
        squad.signal(signal.SIGHUP)
        await self.logged(squad, "Reload done", 20)
        self.assertNotIn(worker, children(squad.pid))
        self.assertEqual((await squad.post(2)).code, 201)

    async def test_a_late_renewal_does_not_undo_a_hand_over(self) -> None:
        """A replaced worker's heartbeat renewal that timed out can still land after its
        hand-over; it must fail then, not make the stopped worker look alive for a whole lease
        (its work would wait that long)."""
        pool, db = await mongo(self.uri, self.database)
        self.addCleanup(pool.disconnect)
        store = Store(timeout=5)
        store.attach(db)
        later = datetime(2100, 1, 1)
        await store.heartbeat("stopped-worker", later, {})
        await store.heartbeat("stopped-worker", later, {})  # renewals keep working
        await store.mark_stopped("stopped-worker")
        with self.assertRaises(DuplicateKeyError):
            await store.heartbeat("stopped-worker", later, {})
        view = await store.lease_view(datetime(2000, 1, 1))
        self.assertEqual(view.dead, ["stopped-worker"])
