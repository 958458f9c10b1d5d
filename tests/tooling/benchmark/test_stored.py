"""
The sweep's ``stored`` reference (``benchmark/servers/stored/``) and its ``--processed`` form: a
short real run on an ephemeral port against a private database, the processing in memory on a
``Clock``, their place among the sweep's targets, and the verdicts against them.
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, cast

from bson import ObjectId
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txmongo.connection import ConnectionPool

from benchmark.args import parse_arguments
from benchmark.figures import TargetResult
from benchmark.load.runner import BENCHMARK_DIR
from benchmark.servers.stored.server import Stored
from benchmark.sweep.targets import TargetContext, select_targets
from harness.probes import free_port
from tests.signups import VALID_SIGNUP
from tests.support import database_uri, start_service
from tests.tooling.benchmark.fixtures import target, verdicts_of

ROOT = BENCHMARK_DIR.parent


def _post(url: str, body: Mapping[str, object]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/users",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status), json.loads(answer.read())


class StoredServerTests(SynchronousTestCase):
    """The stored reference for real: two processes on one port, a private database."""

    def setUp(self) -> None:
        import pymongo

        uri = database_uri()
        self.database = f"stored_test_{uuid.uuid4().hex[:12]}"
        client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
        self.addCleanup(client.close)
        self.addCleanup(client.drop_database, self.database)
        self.users = client[self.database]["users"]
        port = free_port()
        command = [sys.executable, "-m", "benchmark.servers.stored.server", "--port", str(port)]
        command += ["--workers", "2", "--mongo-uri", uri, "--database", self.database]
        self.url = start_service(self, "stored", command, port, cwd=ROOT)

    def test_signups_are_stored_before_the_answer(self) -> None:
        """
        Concurrent sign-ups each get 201 with the stored user (its id, no password); by then
        every one is in the database, without its password, ``processed: false``.
        """
        bodies = [{**VALID_SIGNUP, "username": f"ada{n}"} for n in range(12)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda body: _post(self.url, body), bodies))
        self.assertEqual([status for status, _ in answers], [201] * len(bodies))
        for (_, shown), body in zip(answers, bodies, strict=True):
            self.assertNotIn("password", shown)
            self.assertEqual(shown["username"], body["username"])
        from bson import ObjectId

        ids = [ObjectId(shown["_id"]) for _, shown in answers]
        stored = list(self.users.find({"_id": {"$in": ids}}))
        self.assertEqual(len(stored), len(bodies))
        self.assertEqual(
            sorted(user["username"] for user in stored), sorted(b["username"] for b in bodies)
        )
        self.assertFalse(any("password" in user for user in stored))
        self.assertTrue(all(user["processed"] is False for user in stored))

    def test_processed_later_with_a_new_date(self) -> None:
        """
        With ``--processed --slow-min 0.3 --slow-max 0.6`` each stored user becomes
        ``processed: true`` with a ``date_updated`` 0.3-0.6 s (plus a tick) after its creation.
        """
        port = free_port()
        command = [sys.executable, "-m", "benchmark.servers.stored.server", "--port", str(port)]
        command += ["--workers", "2", "--mongo-uri", database_uri(), "--database", self.database]
        command += ["--processed", "--slow-min", "0.3", "--slow-max", "0.6"]
        url = start_service(self, "stored-processed", command, port, cwd=ROOT)
        bodies = [{**VALID_SIGNUP, "username": f"grace{n}"} for n in range(8)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda body: _post(url, body), bodies))
        self.assertEqual([status for status, _ in answers], [201] * len(bodies))
        deadline = time.monotonic() + 20
        while self.users.count_documents({"processed": True}) < len(bodies):
            self.assertLess(time.monotonic(), deadline, "not every user got processed")
            time.sleep(0.2)
        for user in self.users.find({}):
            lag = (user["date_updated"] - user["date_created"]).total_seconds()
            self.assertTrue(0.3 <= lag <= 0.6 + 1.0, lag)

    def test_flush_and_health(self) -> None:
        """GET /health and DELETE /collections answer 204; the flush empties ``users``."""
        _post(self.url, VALID_SIGNUP)
        for method, path in (("GET", "/health"), ("DELETE", "/collections")):
            request = urllib.request.Request(self.url + path, method=method)
            with urllib.request.urlopen(request, timeout=10) as answer:
                self.assertEqual(answer.status, 204, path)
        self.assertEqual(self.users.count_documents({}), 0)


class _Users:
    """A stand-in for txmongo's ``users``: records each write; ``failures`` updates fail."""

    def __init__(self) -> None:
        self.inserted: list[dict[str, Any]] = []
        self.updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.failures = 0

    def insert_many(
        self, documents: list[dict[str, Any]], ordered: bool, timeout: float
    ) -> defer.Deferred[None]:
        self.inserted.extend(documents)
        return defer.succeed(None)

    def update_many(
        self, query: dict[str, Any], update: dict[str, Any], timeout: float
    ) -> defer.Deferred[None]:
        if self.failures:
            self.failures -= 1
            return defer.fail(ConnectionError("the database went away"))
        self.updates.append((query, update))
        return defer.succeed(None)


class StoredProcessingTests(SynchronousTestCase):
    """``Stored`` with ``processed``: what it writes, and when, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.users = _Users()
        pool = cast(ConnectionPool, {"db": {"users": self.users}})
        self.stored = Stored(pool, "db", self.clock, processed=(5.0, 15.0), rng=random.Random(7))
        # StubTreq sets its methods (treq's functions) at run time, unseen by mypy.
        self.http: Any = StubTreq(self.stored.app.resource())

    def _sign_up(self, count: int) -> list[ObjectId]:
        answers = [
            self.http.post(
                "http://stored.test/users",
                json={**VALID_SIGNUP, "username": f"ada{n}"},
            )
            for n in range(count)
        ]
        self.http.flush()
        self.clock.advance(0)
        self.http.flush()
        self.assertEqual([self.successResultOf(a).code for a in answers], [201] * count)
        return [user["_id"] for user in self.users.inserted[-count:]]

    def test_each_user_processed_once_between_min_and_max(self) -> None:
        """
        Every stored user is marked processed exactly once, 5-15 s after its insert, by an
        ``update_many`` on ``_id: {$in}`` that sets ``processed`` and a ``date_updated`` of the
        moment of the update; the users due within one 0.2 s tick share one update.
        """
        ids = self._sign_up(50)
        self.stored.start_processing(0.2)
        when: list[float] = []
        while self.clock.seconds() < 16:
            before = len(self.users.updates)
            self.clock.advance(0.2)
            when += [self.clock.seconds()] * (len(self.users.updates) - before)
        marked = [i for query, _ in self.users.updates for i in query["_id"]["$in"]]
        self.assertEqual(sorted(marked), sorted(ids))
        self.assertTrue(all(5.0 <= t <= 15.2 for t in when), when)
        self.assertLess(len(self.users.updates), len(ids))
        for (query, update), at in zip(self.users.updates, when, strict=True):
            self.assertEqual(set(query), {"_id"})
            self.assertEqual(set(update), {"$set"})
            self.assertIs(update["$set"]["processed"], True)
            self.assertAlmostEqual(update["$set"]["date_updated"].timestamp(), at, places=3)

    def test_a_failed_update_is_retried(self) -> None:
        """An update that fails puts its users back: the next tick marks them processed."""
        ids = self._sign_up(3)
        self.users.failures = 1
        self.stored.start_processing(0.2)
        self.clock.pump([0.2] * 80)
        marked = [i for query, _ in self.users.updates for i in query["_id"]["$in"]]
        self.assertEqual(sorted(marked), sorted(ids))
        self.assertEqual(self.users.failures, 0)

    def test_nothing_processed_without_the_option(self) -> None:
        """Plain ``stored`` has no processing loop and never updates a user."""
        plain = Stored(cast(ConnectionPool, {"db": {"users": self.users}}), "db", self.clock)
        self.assertIsNone(plain.start_processing())
        self._sign_up(2)
        self.clock.pump([1.0] * 20)
        self.assertEqual(self.users.updates, [])


class StoredTargetTests(SynchronousTestCase):
    """``stored`` among the sweep's targets, and what the report judges against it."""

    def test_in_the_default_order_with_its_own_database(self) -> None:
        """
        A default sweep measures ``stored`` after the ceiling; it writes into its own database
        on the database server of the sweep, with the ceiling's process count.
        """
        settings = parse_arguments(["--sweep"], {"SQUAD_MONGO_URI": "mongodb://127.0.0.1:1"})
        context = TargetContext(settings, {"SQUAD_WORKERS": "3"}, port=lambda: 9999)
        labels = [t.label for t in select_targets(None, context)]
        self.assertEqual(labels.index("stored"), labels.index("ceiling") + 1)
        (stored,) = select_targets(("stored",), context)
        self.assertEqual(stored.database, "squad_stored")
        self.assertIn("REFERENCE", stored.description)
        assert stored.command is not None
        command = list(stored.command)
        self.assertEqual(command[command.index("--mongo-uri") + 1], "mongodb://127.0.0.1:1")
        self.assertEqual(command[command.index("--database") + 1], "squad_stored")
        self.assertEqual(command[command.index("--workers") + 1], "3")
        self.assertEqual(command[command.index("--port") + 1], "9999")

    def test_stored_processed_and_the_node_cluster(self) -> None:
        """
        A default sweep measures ``stored-processed`` right after ``stored`` and the Node
        reference with one process per core right after the one-process one; the first is
        ``stored`` with ``--processed`` and squad's slow-step range, in its own database, the
        second the same Node server with WORKERS set.
        """
        settings = parse_arguments(["--sweep"], {"SQUAD_MONGO_URI": "mongodb://127.0.0.1:1"})
        environ = {"SQUAD_SLOW_MIN": "1", "SQUAD_SLOW_MAX": "2", "SWEEP_NODE_WORKERS": "3"}
        context = TargetContext(settings, environ, port=lambda: 9999)
        labels = [t.label for t in select_targets(None, context)]
        self.assertEqual(labels.index("stored-processed"), labels.index("stored") + 1)
        self.assertEqual(labels.index("reference-node-cluster"), labels.index("reference-node") + 1)
        processed, single, cluster = select_targets(
            ("stored-processed", "reference-node", "reference-node-cluster"), context
        )
        self.assertEqual(processed.database, "squad_stored_processed")
        self.assertIn("REFERENCE", processed.description)
        self.assertIn("in memory only", processed.description)
        assert processed.command is not None
        command = list(processed.command)
        self.assertIn("--processed", command)
        self.assertEqual(command[command.index("--slow-min") + 1], "1")
        self.assertEqual(command[command.index("--slow-max") + 1], "2")
        self.assertEqual(command[command.index("--database") + 1], "squad_stored_processed")
        self.assertEqual((single.env["WORKERS"], cluster.env["WORKERS"]), ("1", "3"))
        self.assertEqual(single.command, cluster.command)
        self.assertIn("3 processes", cluster.description)

    def test_verdicts_against_stored(self) -> None:
        """
        requests/s at least 0.8x stored, p99 at most 2x stored's + 5 ms and database CPU per
        sign-up at most 2x stored's, at every level: met, and not met with how far off.
        """
        rps = "requests/s at least 0.8x the stored reference at every level"
        p99 = "p99 at most 2x the stored reference's + 5 ms at every level"
        cpu = "database CPU per sign-up at most 2x the stored reference's at every level"
        good = verdicts_of(
            target("squad", 1800, 17.0, 1600, 1200, database_cpu=(24.0, 20.0)),
            target("stored", 2200, 6.0, 2000, 700, database_cpu=(12.0, 11.0)),
        )
        self.assertEqual(good[rps], (True, "0.82x at 25, 0.80x at 1000"))
        self.assertEqual(
            good[p99], (True, "17.0 ms (at most 17.0) at 25, 1,200.0 ms (at most 1,405.0) at 1000")
        )
        self.assertEqual(
            good[cpu], (True, "2.00x (2.400 vs 1.200 ms) at 25, 1.82x (2.000 vs 1.100 ms) at 1000")
        )
        bad = verdicts_of(
            target("squad", 1100, 20.0, 1800, 900, database_cpu=(36.0, 20.0)),
            target("stored", 2200, 6.0, 2000, 500, database_cpu=(12.0, 12.0)),
        )
        self.assertEqual(bad[rps], (False, "0.50x at 25 (38% short), 0.90x at 1000"))
        self.assertEqual(
            bad[p99],
            (
                False,
                "20.0 ms (at most 17.0, 18% over) at 25, 900.0 ms (at most 1,005.0) at 1000",
            ),
        )
        self.assertEqual(
            bad[cpu],
            (False, "3.00x (3.600 vs 1.200 ms, 50% over) at 25, 1.67x (2.000 vs 1.200 ms) at 1000"),
        )

    def test_database_cpu_needs_both_figures(self) -> None:
        """
        A level where either database CPU was not read is left out of that verdict, and with
        none left the verdict is not given rather than guessed.
        """
        cpu = "database CPU per sign-up at most 2x the stored reference's at every level"
        squad = target("squad", 1800, 17.0, 1600, 1200)
        stored = target("stored", 2200, 6.0, 2000, 700)
        unread = TargetResult(
            "stored",
            "stored",
            stored.url,
            [replace(level, database_cpu_seconds=None) for level in stored.levels],
        )
        self.assertNotIn(cpu, verdicts_of(squad, unread))
        partly = TargetResult("stored", "stored", stored.url, [stored.levels[0], unread.levels[1]])
        self.assertEqual(verdicts_of(squad, partly)[cpu], (True, "1.00x (1.200 vs 1.200 ms) at 25"))

    def test_the_better_node_reference(self) -> None:
        """
        At each level squad is judged against whichever Node reference answered more, one
        process or one per core; the verdict names it, and a shortfall says how far.
        """
        node = (
            "requests/s at least 1.6x the better Node reference's (one process or one per core)"
            " at every level"
        )
        judged = verdicts_of(
            target("squad", 2000, 14.0, 1800, 900),
            target("reference-node", 1000, 50, 1200, 3000),
            target("reference-node-cluster", 1250, 40, 900, 3000),
        )
        self.assertEqual(
            judged[node],
            (
                False,
                "1.60x reference-node-cluster at 25, 1.50x reference-node at 1000 (6% short)",
            ),
        )
