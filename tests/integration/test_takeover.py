"""A process killed mid slow step: another takes its users over and processes every one.

The second test runs separate ``twistd -n squad`` instances (not workers of one
service) on one database, as behind a load balancer; one is SIGKILLed while its users are mid
slow step and the instances still running finish every one.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime

from bson import ObjectId
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from squad.passwords import PasswordSealer, load_or_create_key, verify_password
from tests.support import (
    SquadProcess,
    database_uri,
    drop_database,
    eventually,
    mongo,
    own_database,
    sleep,
    start_squad,
)

# Each instance is one worker; its lease lapses 2 s after it dies.
LEASE = ("--workers", "1", "--lease-seconds", "2")


class TakeOverTests(TestCase):
    timeout = 90

    async def test_killed_process_work_is_finished_by_another(self) -> None:
        """Users acknowledged by a process that is then SIGKILLed mid slow step all reach
        processed: true through another process on the same database, after its lease."""
        uri = database_uri()
        database = own_database(self, "squad_takeover")
        # Instances on one database share the seal key, or none could hash another's passwords.
        key_file = os.path.abspath(self.mktemp() + ".key")
        first = SquadProcess(
            self, uri, database, key_file, *LEASE, "--slow-min", "60", "--slow-max", "60"
        )
        await first.ready()
        ids = await first.post_many(5)
        first.kill()

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
            await sleep(0.1)
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
        database = own_database(self, "squad_instances")
        key_file = os.path.abspath(self.mktemp() + ".key")
        instances = []
        for number in range(3):
            # The doomed instance's slow step outlasts the test: its users are mid step when
            # it dies. The survivors' steps are short so the test runs in seconds.
            slow = ["60", "60"] if number == 0 else ["0.1", "0.2"]
            instance = SquadProcess(
                self, uri, database, key_file, *LEASE, "--slow-min", slow[0], "--slow-max", slow[1]
            )
            instances.append(instance)
            if number == 0:
                await instance.ready()  # it creates the shared seal key first
        for instance in instances[1:]:
            await instance.ready()
        ids = await instances[0].post_many(8)
        pool, db = await mongo(uri, database)
        self.addCleanup(pool.disconnect)
        mid_step = await db.users.count_documents(
            {"_id": {"$in": ids}, "processed": False}, timeout=5
        )
        self.assertEqual(mid_step, len(ids))

        instances[0].kill()
        killed_at = reactor.seconds()

        finished = {"_id": {"$in": ids}, "processed": True, "password_hash": {"$exists": True}}
        done = 0
        while reactor.seconds() - killed_at < 90:
            done = await db.users.count_documents(finished, timeout=5)
            if done == len(ids):
                break
            await sleep(0.2)
        self.assertEqual(done, len(ids))
        for survivor in instances[1:]:
            self.assertIsNone(survivor.process.poll(), "a surviving instance stopped")
        for _ in range(50):  # the pending documents go once the finishing writes are done
            left = [
                await db[name].count_documents({}, timeout=5)
                for name in ("pending", "sealed_passwords")
            ]
            if left == [0, 0]:
                break
            await sleep(0.2)
        self.assertEqual(await db.pending.count_documents({}, timeout=5), 0)
        self.assertEqual(await db.sealed_passwords.count_documents({}, timeout=5), 0)

    # Start-up of three processes plus the 90 s the issue allows.
    test_killed_instance_work_is_finished_by_the_other_instances.timeout = 120  # type: ignore[attr-defined]

    async def test_work_left_by_an_older_version_is_finished_after_an_upgrade(self) -> None:
        """A batch as an older squad stored it (its sealed passwords inside its pending
        document), left by a process that died before the upgrade: this version takes it
        over, processes its users and hashes each password from that document (one of them
        was hashed already and is left alone), and leaves no work behind."""
        uri = database_uri()
        database = f"squad_upgrade_{uuid.uuid4().hex[:8]}"
        self.addCleanup(drop_database, uri, database)
        key_file = os.path.abspath(self.mktemp() + ".key")
        sealer = PasswordSealer(load_or_create_key(key_file))
        pool, db = await mongo(uri, database)
        self.addCleanup(pool.disconnect)
        hashed, waiting = ObjectId(), ObjectId()
        moment = datetime(2026, 1, 1)
        await db.users.insert_many(
            [
                {
                    "_id": user_id,
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "email": "ada@example.com",
                    "username": f"ada_{user_id}",
                    "processed": False,
                    "date_created": moment,
                    "date_updated": moment,
                }
                for user_id in (hashed, waiting)
            ],
            timeout=5,
        )
        await db.users.update_one(
            {"_id": hashed}, {"$set": {"password_hash": "$argon2id$kept"}}, timeout=5
        )
        old_owner = "old-host:1:0ld0ld00"
        await db.pending.insert_one(
            {
                "_id": ObjectId(),
                "owner": old_owner,
                "users": [hashed, waiting],
                "sealed": [
                    sealer.seal("first password", associated=hashed.binary),
                    sealer.seal("second password", associated=waiting.binary),
                ],
            },
            timeout=5,
        )
        await db.processes.insert_one(
            {"_id": old_owner, "alive_until": datetime(2026, 1, 1)}, timeout=5
        )

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

        async def finished() -> bool:
            done = await db.users.count_documents(
                {"processed": True, "password_hash": {"$exists": True}}, timeout=5
            )
            left = [
                await db[name].count_documents({}, timeout=5)
                for name in ("pending", "sealed_passwords")
            ]
            return done == 2 and left == [0, 0]

        await eventually(finished, 30, "the older batch processed and hashed, nothing left")
        users = {u["_id"]: u for u in await db.users.find({}, timeout=5)}
        self.assertEqual(users[hashed]["password_hash"], "$argon2id$kept")
        self.assertTrue(
            await deferToThread(verify_password, users[waiting]["password_hash"], "second password")
        )
