"""Faults against real processes and a real database: what squad promises when things break.

Every test here runs squad the way production does: ``twistd -n squad`` as its own process
tree (its own process group, so it can be SIGKILLed whole, or one worker at a time), on
127.0.0.1 ephemeral ports. Tests that kill or freeze the database start a private one with
``bin/db --port P --data DIR``; the others use the suite's database (``SQUAD_TEST_MONGO_URI``)
with a database name of their own, dropped afterwards. Leases and slow steps are short so the
whole module stays around a minute.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from typing import Any

from bson import ObjectId
from twisted.internet import endpoints, reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from harness.processes import alive, children
from squad.runtime.service_tree import DrainService
from squad.runtime.supervisor import RESTART_DELAY
from tests.signups import signup
from tests.support import (
    Answer,
    PrivateDatabase,
    SquadProcess,
    database_uri,
    eventually,
    mongo,
    own_database,
    request,
    sleep,
    start_squad,
)


class Verifier(Resource):
    """A verifier service that breaks on request: it drops the first call's connection and
    answers 500 until ``healthy`` is set, then 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Any] = []
        self.healthy = False

    def render_POST(self, request: Any) -> bytes | int:
        self.calls.append(json.loads(request.content.read()))
        if len(self.calls) == 1:
            request.transport.abortConnection()  # a verifier that dies mid-call
            return NOT_DONE_YET
        request.setResponseCode(200 if self.healthy else 500)
        return b"{}"


class FaultTests(TestCase):
    timeout = 60

    def database(self, uri: str) -> str:
        return own_database(self, "squad_faults", uri)

    def setUp(self) -> None:
        # Instances on one database must share the seal key, or none could hash the passwords
        # of users another accepted: every instance a test starts reads this one.
        self.key_file = os.path.abspath(str(self.mktemp()) + ".key")

    def squad(self, database: str, options: str) -> SquadProcess:
        """``twistd -n squad`` with ``options`` (as on a command line) on ``database``."""
        return SquadProcess(self, database_uri(), database, self.key_file, *options.split())

    async def users(self, uri: str, database: str) -> Any:
        pool, db = await mongo(uri, database)
        self.addCleanup(pool.disconnect)
        return db

    async def test_worker_killed_mid_slow_step_is_replaced_and_its_work_taken_over(
        self,
    ) -> None:
        """With --workers 2, SIGKILLing the one worker that holds slow work (not the parent):
        the parent starts a replacement, and every user that worker acknowledged is processed
        by a worker of the same service after the lease."""
        uri = database_uri()
        database = self.database(uri)
        squad = self.squad(database, "--workers 2 --lease-seconds 3 --slow-min 5 --slow-max 6")
        await squad.ready()
        ids = await squad.post_many(6)
        users = await self.users(uri, database)
        # Owners read "host:pid:random": the pid of the worker holding each user's work, in
        # its batch's work document (which outlives the hash while the steps run).
        owners = {doc["owner"] for doc in await users.sealed_passwords.find({}, timeout=5)}
        holders = {int(owner.split(":")[-2]) for owner in owners if owner}
        workers = children(squad.pid)
        self.assertTrue(holders and holders <= workers, (holders, workers))
        victim = sorted(holders)[0]
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            now = children(squad.pid)
            return len(now) == 2 and victim not in now

        await eventually(replaced, 5, "a replacement for the killed worker")

        async def all_processed() -> bool:
            found = await users.users.count_documents(
                {"_id": {"$in": ids}, "processed": True}, timeout=5
            )
            return bool(found == len(ids))

        await eventually(all_processed, 20, "the killed worker's users processed")
        self.assertIsNone(squad.process.poll())

    async def test_connections_to_a_killed_workers_socket_wait_for_its_replacement(
        self,
    ) -> None:
        """With --workers 2 each worker has its own SO_REUSEPORT socket, so the kernel keeps
        giving about half of new connections to a SIGKILLed worker's socket. The parent holds
        that socket open: those connections wait for the replacement and are answered 201,
        none refused or reset."""
        uri = database_uri()
        database = self.database(uri)
        squad = self.squad(database, "--workers 2")
        await squad.ready()
        victim = sorted(children(squad.pid))[0]
        os.kill(victim, signal.SIGKILL)
        # Each request on a new connection, all at once, right after the kill.
        results = await DeferredList(
            [ensureDeferred(squad.post(n)) for n in range(16)], consumeErrors=True
        )
        failures = [result for ok, result in results if not ok]
        self.assertEqual(failures, [], squad.log_tail())
        self.assertEqual({answer.code for _, answer in results}, {201})
        # Some of them did wait: the live worker alone answers in milliseconds, a replacement
        # starts no sooner than RESTART_DELAY after the death.
        self.assertGreater(max(answer.took for _, answer in results), RESTART_DELAY)
        self.assertNotIn(victim, children(squad.pid))

    async def test_workers_of_a_killed_supervisor_stop_and_hand_their_work_back(self) -> None:
        """SIGKILL to the parent alone (--workers 2, the workers holding slow steps for 30 s):
        the workers see their supervisor gone and stop within 10 s, so none keeps serving on
        the port, and they hand their work back: a second instance finishes it at once, long
        before the 60 s lease."""
        uri = database_uri()
        database = self.database(uri)
        first = self.squad(database, "--workers 2 --lease-seconds 60 --slow-min 30 --slow-max 30")
        await first.ready()
        ids = await first.post_many(6)
        workers = children(first.pid)
        self.assertEqual(len(workers), 2)
        first.signal(signal.SIGKILL)

        async def workers_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        await eventually(workers_gone, 10, "the workers stopping after their supervisor died")

        second = self.squad(
            database, "--workers 1 --lease-seconds 60 --slow-min 0.1 --slow-max 0.2"
        )
        await second.ready()
        users = await self.users(uri, database)

        async def all_processed() -> bool:
            found = await users.users.count_documents(
                {"_id": {"$in": ids}, "processed": True}, timeout=5
            )
            return bool(found == len(ids))

        await eventually(all_processed, 10, "the handed-back work finished by a new instance")

    async def test_sigterm_with_work_in_flight_hands_it_back(self) -> None:
        """SIGTERM to squad (--workers 2) while sign-ups are arriving and slow steps run: every
        request gets an answer or a refused connection (no hang), squad exits within 10 s,
        every 201 is stored, its unfinished work is handed over (each stopped process's
        heartbeat marked lapsed, one write, not one per user), and a second instance picks it
        up at once (long before the 60 s lease) and finishes it."""
        uri = database_uri()
        database = self.database(uri)
        first = self.squad(database, "--workers 2 --lease-seconds 60 --slow-min 30 --slow-max 30")
        await first.ready()
        ids = await first.post_many(6)

        answers: list[Answer] = []
        stopped: list[float] = []

        async def client(index: int) -> None:
            # Sign-ups back to back until the service stops answering: some are inside squad
            # (read, waiting on the database) when the signal lands.
            for n in range(10_000):
                try:
                    answer = await first.post(1000 * index + n)
                except Exception:
                    return  # refused or reset once the workers stopped listening: no 201
                answers.append(answer)
                if stopped and time.monotonic() - stopped[0] > 10:
                    return

        clients = [ensureDeferred(client(index)) for index in range(8)]
        await sleep(0.5)
        first.signal(signal.SIGTERM)
        stopped.append(time.monotonic())
        await DeferredList(clients)
        self.assertLess(time.monotonic() - stopped[0], 10, "requests hung through the shutdown")
        self.assertTrue(answers)
        for answer in answers:
            self.assertIn(answer.code, (201, 503), answer.body)
            self.assertLess(answer.took, 2.5)
            if answer.code == 201:
                ids.append(ObjectId(answer.json()["_id"]))

        async def exited() -> bool:
            return first.process.poll() is not None

        await eventually(exited, 10, "squad exiting after SIGTERM")
        self.assertLess(time.monotonic() - stopped[0], 10)
        # twistd re-raises the signal that stopped it, so -SIGTERM is a clean stop too.
        self.assertIn(first.process.returncode, (0, -signal.SIGTERM), first.log_tail())
        self.assertEqual(children(first.pid), set())

        users = await self.users(uri, database)
        stored = await users.users.count_documents({"_id": {"$in": ids}}, timeout=5)
        self.assertEqual(stored, len(ids), "an acknowledged user is missing")
        # One work document per batch, listing its users (and a pending one for overflow).
        owners = {
            doc["owner"]
            for name in ("sealed_passwords", "pending")
            for doc in await users[name].find({"users": {"$in": ids}}, timeout=5)
        }
        self.assertTrue(owners)
        heartbeats = {
            doc["_id"]: doc["alive_until"]
            for doc in await users.processes.find({}, timeout=5)
            if doc["_id"] != "flush"
        }
        # Handed over in one write per process: each owner's heartbeat lapsed at the stop.
        for owner in owners - {""}:
            self.assertEqual(heartbeats.get(owner), datetime(1970, 1, 1), "work not handed over")

        second = self.squad(
            database, "--workers 1 --lease-seconds 60 --slow-min 0.1 --slow-max 0.2"
        )
        await second.ready()

        async def all_processed() -> bool:
            found = await users.users.count_documents(
                {"_id": {"$in": ids}, "processed": True}, timeout=5
            )
            return bool(found == len(ids))

        await eventually(all_processed, 10, "the handed-back work finished by a new instance")

    async def test_failing_verifier_is_retried_visibly_until_it_recovers(self) -> None:
        """With --verifier-url, a verifier that drops the connection and then answers 500
        leaves the user unprocessed with verification_state "retrying" (attempts and the last
        error recorded) in its document; once the verifier answers 200 the user is processed
        with state "verified", without a restart."""
        uri = database_uri()
        database = self.database(uri)
        verifier = Verifier()
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(verifier)
        )
        self.addCleanup(port.stopListening)
        verifier_url = f"http://127.0.0.1:{port.getHost().port}/verify"
        squad = self.squad(database, f"--workers 1 --verifier-url {verifier_url}")
        await squad.ready()
        [user_id] = await squad.post_many(1)
        users = await self.users(uri, database)

        async def retrying() -> bool:
            [doc] = await users.users.find({"_id": user_id}, limit=-1, timeout=5)
            return bool(
                doc.get("verification_state") == "retrying"
                and doc.get("verification_attempts", 0) >= 2
            )

        await eventually(retrying, 15, 'verification_state "retrying" after two failed calls')
        [doc] = await users.users.find({"_id": user_id}, limit=-1, timeout=5)
        self.assertFalse(doc["processed"])
        self.assertIn("500", doc["verification_error"])
        self.assertFalse((await request("GET", f"{squad.url}/users/{user_id}")).json()["processed"])

        verifier.healthy = True

        async def verified() -> bool:
            answer = await request("GET", f"{squad.url}/users/{user_id}")
            return bool(answer.json()["processed"])

        await eventually(verified, 15, "the user processed once the verifier recovered")
        [doc] = await users.users.find({"_id": user_id}, limit=-1, timeout=5)
        self.assertEqual(doc["verification_state"], "verified")
        self.assertGreaterEqual(doc["verification_attempts"], 3)
        self.assertGreaterEqual(len(verifier.calls), 3)
        self.assertEqual(verifier.calls[-1], {"id": str(user_id)})

    async def test_overload_is_shed_fast_while_the_database_hangs(self) -> None:
        """With the database frozen (SIGSTOP: connections open, no answers), sign-ups beyond
        the waiting limit are shed at once with 503 "overloaded" and Retry-After, those within
        it answer 503 "database_unavailable" at their 2 s deadline, nothing hangs; once the
        database resumes, sign-ups are stored again. (In-process: the limit, 4096 in
        production, is lowered to 4 so a test can reach it.)"""
        database_uri()
        db = PrivateDatabase(self)
        await db.start()
        squad = await start_squad(self, uri=db.uri)
        self.addCleanup(db.signal, signal.SIGCONT)  # before squad stops (cleanups run LIFO)
        service: Any = squad.service
        [drain] = [child for child in service if isinstance(child, DrainService)]
        drain._api.max_waiting = 4
        answer = await request("POST", squad.url + "/users", signup(0))
        self.assertEqual(answer.code, 201)

        db.signal(signal.SIGSTOP)
        burst = [
            ensureDeferred(request("POST", squad.url + "/users", signup(n))) for n in range(12)
        ]
        answers = [answer for _, answer in await DeferredList(burst, consumeErrors=True)]
        self.assertTrue(all(isinstance(answer, Answer) for answer in answers), answers)
        codes = sorted((answer.json()["error"], answer.took < 2.5) for answer in answers)
        self.assertEqual(
            codes, [("database_unavailable", True)] * 4 + [("overloaded", True)] * 8, codes
        )
        for answer in answers:
            self.assertEqual(answer.code, 503)
            self.assertTrue(answer.retry_after)
            if answer.json()["error"] == "overloaded":
                self.assertLess(answer.took, 0.5)

        db.signal(signal.SIGCONT)

        async def stored_again() -> bool:
            return (await request("POST", squad.url + "/users", signup(99))).code == 201

        await eventually(stored_again, 15, "sign-ups stored once the database resumed")
