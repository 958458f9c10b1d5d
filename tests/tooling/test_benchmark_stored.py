"""
The sweep's ``stored`` reference (``benchmark/stored/``): a short real run on an ephemeral port
against a private database, its place among the sweep's targets, and its verdicts.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from benchmark.args import parse_arguments
from benchmark.load import BENCHMARK_DIR
from benchmark.sweep import TargetContext, free_port, select_targets
from tests.benchmark_fixtures import target, verdicts_of
from tests.signups import VALID_SIGNUP
from tests.support import database_uri, start_service

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
        command = [sys.executable, "-m", "benchmark.stored.server", "--port", str(port)]
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

    def test_flush_and_health(self) -> None:
        """GET /health and DELETE /collections answer 204; the flush empties ``users``."""
        _post(self.url, VALID_SIGNUP)
        for method, path in (("GET", "/health"), ("DELETE", "/collections")):
            request = urllib.request.Request(self.url + path, method=method)
            with urllib.request.urlopen(request, timeout=10) as answer:
                self.assertEqual(answer.status, 204, path)
        self.assertEqual(self.users.count_documents({}), 0)


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

    def test_verdicts_against_stored_and_node(self) -> None:
        """
        requests/s at least 0.85x stored and p99 at most 1.5x stored's + 5 ms at every level,
        and at least 2.5x Node from 100 connections up: met, and not met, with the figures.
        """
        rps = "requests/s at least 0.85x the stored reference at every level"
        p99 = "p99 at most 1.5x the stored reference's + 5 ms at every level"
        node = "requests/s at least 2.5x the Node reference's from 100 connections up"
        good = verdicts_of(
            target("squad", 2000, 14.0, 1800, 900),
            target("stored", 2200, 6.0, 2000, 700),
            target("reference-node", 600, 200, 700, 3000),
        )
        self.assertEqual(good[rps], (True, "0.91x at 25, 0.90x at 1000"))
        self.assertEqual(
            good[p99], (True, "14.0 ms (at most 14.0) at 25, 900.0 ms (at most 1,055.0) at 1000")
        )
        self.assertEqual(good[node], (True, "2.57x at 1000"))
        bad = verdicts_of(
            target("squad", 1500, 20.0, 1800, 900),
            target("stored", 2200, 6.0, 2000, 500),
            target("reference-node", 600, 200, 1000, 3000),
        )
        self.assertEqual(bad[rps], (False, "0.68x at 25, 0.90x at 1000"))
        self.assertFalse(bad[p99][0])
        self.assertEqual(bad[node], (False, "1.80x at 1000"))
