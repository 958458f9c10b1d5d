"""
The sweep's Node references (``benchmark/servers/reference-node/server.js``) for real: one
process per core through node's cluster module, on an ephemeral port against a private database.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import uuid
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from benchmark.load.runner import BENCHMARK_DIR
from benchmark.run.procs import service_processes
from harness.probes import free_port
from tests.signups import VALID_SIGNUP
from tests.support import database_uri, start_service

SERVER = BENCHMARK_DIR / "servers" / "reference-node" / "server.js"


class NodeClusterTests(SynchronousTestCase):
    """``WORKERS=2``: a primary and two workers on one port, stopped together."""

    def setUp(self) -> None:
        import pymongo

        node = os.environ.get("NODE") or shutil.which("node")
        if not node or not (BENCHMARK_DIR / "node_modules" / "express").is_dir():
            raise SkipTest("node and benchmark/node_modules (./bin/setup) are needed")
        uri = database_uri()
        self.database = f"node_test_{uuid.uuid4().hex[:12]}"
        client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
        self.addCleanup(client.close)
        self.addCleanup(client.drop_database, self.database)
        self.users = client[self.database]["users"]
        self.port = free_port()
        settings = [f"PORT={self.port}", f"MONGO_URI={uri}", f"DATABASE={self.database}"]
        command = ["env", *settings, "WORKERS=2", "SLOW_MIN=0.1", "SLOW_MAX=0.2", node]
        self.url = start_service(self, "reference-node-cluster", [*command, str(SERVER)], self.port)

    def test_processes_share_the_port_and_store(self) -> None:
        """
        The port is served by a primary and two workers, all found from the port as the sweep
        finds a service's processes; a sign-up is answered 201 and stored without its password.
        """
        self.assertEqual(len(service_processes(self.port)), 3)
        request = urllib.request.Request(
            self.url + "/users",
            data=json.dumps(VALID_SIGNUP).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            self.assertEqual(answer.status, 201)
            shown = json.loads(answer.read())
        self.assertNotIn("password", shown)
        (stored,) = list(self.users.find({}))
        self.assertEqual(stored["username"], VALID_SIGNUP["username"])
        self.assertNotIn("password", stored)
