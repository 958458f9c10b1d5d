"""A process killed mid slow step: another takes its users over and processes every one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import treq
from bson import ObjectId
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import database_uri, drop_database, mongo, start_squad
from tests.test_database_outage import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def signup(n: int) -> bytes:
    return json.dumps(
        {
            "firstName": "Margaret",
            "lastName": "Hamilton",
            "email": f"margaret{n}@example.org",
            "username": f"mhamilton{n}",
            "password": "apollo-guidance-11",
        }
    ).encode()


class TakeOverTests(TestCase):
    timeout = 90

    async def test_killed_process_work_is_finished_by_another(self) -> None:
        """Users acknowledged by a process that is then SIGKILLed mid slow step all reach
        processed: true through another process on the same database, after its lease."""
        uri = database_uri()
        database = f"squad_takeover_{uuid.uuid4().hex[:8]}"
        self.addCleanup(drop_database, uri, database)
        port = free_port()
        # Instances on one database share the seal key, or none could hash another's passwords.
        key_file = os.path.abspath(self.mktemp() + ".key")
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted",
                "squad",
                "--port",
                f"tcp:{port}:interface=127.0.0.1",
                "--mongo-uri",
                uri,
                "--database",
                database,
                "--workers",
                "1",
                "--lease-seconds",
                "2",
                "--slow-min",
                "60",
                "--slow-max",
                "60",
                "--seal-key-file",
                key_file,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.addCleanup(lambda: first.kill() if first.poll() is None else None)
        await wait_for_port(port)
        ids = []
        for n in range(5):
            response = await treq.post(
                f"http://127.0.0.1:{port}/users",
                data=signup(n),
                headers=JSON_HEADERS,
                persistent=False,
            )
            self.assertEqual(response.code, 201)
            ids.append(ObjectId((await treq.json_content(response))["_id"]))
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

        await start_squad(
            self,
            "--lease-seconds",
            "2",
            "--slow-min",
            "0.1",
            "--slow-max",
            "0.2",
            "--seal-key-file",
            key_file,
            database=database,
        )
        pool, db = await mongo(uri, database)
        self.addCleanup(pool.disconnect)
        finished = {"_id": {"$in": ids}, "processed": True, "password_hash": {"$exists": True}}
        for _ in range(300):
            done = await db.users.count_documents(finished, timeout=5)
            if done == len(ids):
                break
            await deferLater(reactor, 0.1, lambda: None)
        processed = await db.users.count_documents(
            {"_id": {"$in": ids}, "processed": True}, timeout=5
        )
        hashed = await db.users.count_documents(
            {"_id": {"$in": ids}, "password_hash": {"$exists": True}}, timeout=5
        )
        self.assertEqual((done, processed, hashed), (len(ids),) * 3)
        self.assertEqual(await db.pending.count_documents({}, timeout=5), 0)
