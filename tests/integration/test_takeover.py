"""A process killed mid slow step: another takes its users over and processes every one.

The second test runs separate ``twistd -n squad`` instances (not workers of one
service) on one database, as behind a load balancer; one is SIGKILLed while its users are mid
slow step and the instances still running finish every one.
"""

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

from tests.integration.test_database_outage import free_port, wait_for_port
from tests.support import database_uri, drop_database, mongo, start_squad

ROOT = Path(__file__).resolve().parents[2]
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


def squad_instance(
    uri: str, database: str, key_file: str, port: int, *argv: str
) -> subprocess.Popen[bytes]:
    """``twistd -n squad`` as its own process group (one worker), on 127.0.0.1:``port``."""
    return subprocess.Popen(
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
            "--seal-key-file",
            key_file,
            *argv,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SQUAD_")},
    )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
        self.assertEqual(await db.sealed_passwords.count_documents({}, timeout=5), 0)

    async def test_killed_instance_work_is_finished_by_the_other_instances(self) -> None:
        """Three separate instances on one database: the one that acknowledged the users is
        SIGKILLed while every one of them is mid slow step; the two still running (started
        before the kill, as behind a balancer) finish all of them, hashed and processed, with
        no pending work left, well within 90 s."""
        uri = database_uri()
        database = f"squad_instances_{uuid.uuid4().hex[:8]}"
        self.addCleanup(drop_database, uri, database)
        key_file = os.path.abspath(self.mktemp() + ".key")
        ports = [free_port() for _ in range(3)]
        instances = []
        for number, port in enumerate(ports):
            # The doomed instance's slow step outlasts the test: its users are mid step when
            # it dies. The survivors' steps are short so the test runs in seconds.
            slow = ["60", "60"] if number == 0 else ["0.1", "0.2"]
            instance = squad_instance(
                uri, database, key_file, port, "--slow-min", slow[0], "--slow-max", slow[1]
            )
            self.addCleanup(kill_group, instance)
            instances.append(instance)
            if number == 0:
                await wait_for_port(port)  # it creates the shared seal key first
        for port in ports[1:]:
            await wait_for_port(port)
        ids = []
        for n in range(8):
            response = await treq.post(
                f"http://127.0.0.1:{ports[0]}/users",
                data=signup(100 + n),
                headers=JSON_HEADERS,
                persistent=False,
            )
            self.assertEqual(response.code, 201)
            ids.append(ObjectId((await treq.json_content(response))["_id"]))
        pool, db = await mongo(uri, database)
        self.addCleanup(pool.disconnect)
        mid_step = await db.users.count_documents(
            {"_id": {"$in": ids}, "processed": False}, timeout=5
        )
        self.assertEqual(mid_step, len(ids))

        os.killpg(instances[0].pid, signal.SIGKILL)
        instances[0].wait()
        killed_at = reactor.seconds()

        finished = {"_id": {"$in": ids}, "processed": True, "password_hash": {"$exists": True}}
        done = 0
        while reactor.seconds() - killed_at < 90:
            done = await db.users.count_documents(finished, timeout=5)
            if done == len(ids):
                break
            await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(done, len(ids))
        for survivor in instances[1:]:
            self.assertIsNone(survivor.poll(), "a surviving instance stopped")
        for _ in range(50):  # the pending documents go once the finishing writes are done
            left = [
                await db[name].count_documents({}, timeout=5)
                for name in ("pending", "sealed_passwords")
            ]
            if left == [0, 0]:
                break
            await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(await db.pending.count_documents({}, timeout=5), 0)
        self.assertEqual(await db.sealed_passwords.count_documents({}, timeout=5), 0)

    # Start-up of three processes plus the 90 s the issue allows.
    test_killed_instance_work_is_finished_by_the_other_instances.timeout = 120  # type: ignore[attr-defined]
