"""What our patches to the embedded FerretDB (bin/patches/, docs/database.md) must keep true.

Each test runs against the real test database (``./bin/test`` starts one) in a database of its
own, so the patched code paths are the ones a squad process uses. Where a test reads something
only FerretDB reports (``explain``'s ``filterPushdown``), it is skipped on a real mongod.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from typing import Any

from bson import ObjectId
from pymongo import DeleteOne, ReturnDocument, UpdateOne
from pymongo.errors import WriteError
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SkipTest, TestCase
from txmongo.connection import ConnectionPool

from harness.services import ROOT
from tests.support import PrivateDatabase, database_uri, drop_database, mongo, sleep


async def scratch_collection(test: TestCase) -> Any:
    """A collection in a database of the test's own, dropped when it ends."""
    uri = database_uri()
    name = f"squad_patches_{uuid.uuid4().hex[:12]}"
    pool, db = await mongo(uri, name)
    test.addCleanup(drop_database, uri, name)
    test.addCleanup(pool.disconnect)
    return db.things


class IdListTests(TestCase):
    """``{_id: {$in: [...]}}`` filters, which the id-in patch answers from the _id index."""

    timeout = 30

    async def collection(self) -> Any:
        return await scratch_collection(self)

    async def filled(self) -> tuple[Any, list[Any], list[Any], list[Any]]:
        """A collection of ObjectId and string ids; a list naming some of them and some absent
        ids of both kinds; and the ids the list does not name."""
        things = await self.collection()
        object_ids: list[Any] = [ObjectId() for _ in range(6)]
        string_ids: list[Any] = [f"user-{n}" for n in range(6)]
        await things.insert_many([{"_id": i, "flag": False} for i in object_ids + string_ids])
        listed = object_ids[:3] + string_ids[:2]
        unlisted = object_ids[3:] + string_ids[2:]
        absent: list[Any] = [ObjectId(), ObjectId(), "user-absent"]
        return things, listed, listed + absent, unlisted

    async def flagged(self, things: Any) -> set[Any]:
        return {d["_id"] for d in await things.find({"flag": True})}

    async def test_update_many_by_id_list_updates_exactly_the_listed_documents(self) -> None:
        """update_many with _id $in (present and absent ids of both kinds) matches and modifies
        exactly the listed documents that exist, and no other."""
        things, listed, query, _ = await self.filled()
        result = await things.update_many({"_id": {"$in": query}}, {"$set": {"flag": True}})
        self.assertEqual((result.matched_count, result.modified_count), (5, 5))
        self.assertEqual(await self.flagged(things), set(listed))

    async def test_find_and_count_by_id_list_return_exactly_the_listed_documents(self) -> None:
        """find and count with _id $in return the listed documents that exist, once each, even
        when an id is listed twice."""
        things, listed, query, _ = await self.filled()
        found = await things.find({"_id": {"$in": query + listed[:1]}})
        self.assertEqual(sorted(map(str, (d["_id"] for d in found))), sorted(map(str, listed)))
        self.assertEqual(await things.count_documents({"_id": {"$in": query}}), 5)

    async def test_delete_many_by_id_list_deletes_exactly_the_listed_documents(self) -> None:
        """delete_many with _id $in deletes the listed documents that exist and leaves every
        other one."""
        things, _, query, unlisted = await self.filled()
        result = await things.delete_many({"_id": {"$in": query}})
        self.assertEqual(result.deleted_count, 5)
        left = {d["_id"] for d in await things.find({})}
        self.assertEqual(left, set(unlisted))

    async def test_lists_not_pushed_down_are_still_filtered_correctly(self) -> None:
        """An $in with a value that is not a string or ObjectId, an empty $in and an $in beside
        another condition are answered by FerretDB's own filter: still exactly right."""
        things, listed, _, _ = await self.filled()
        self.assertEqual(
            [d["_id"] for d in await things.find({"_id": {"$in": [listed[0], 42]}})], [listed[0]]
        )
        self.assertEqual(await things.find({"_id": {"$in": []}}), [])
        await things.update_one({"_id": listed[1]}, {"$set": {"flag": True}})
        found = await things.find({"_id": {"$in": listed[:3]}, "flag": True})
        self.assertEqual([d["_id"] for d in found], [listed[1]])

    async def test_an_id_list_is_answered_by_sql(self) -> None:
        """FerretDB's explain reports the _id $in filter as pushed down to SQLite (the query
        plan then searches the _id index instead of reading every document)."""
        things, _, query, _ = await self.filled()
        plan = await things.database.command(
            {"explain": {"find": things.name, "filter": {"_id": {"$in": query}}}}
        )
        if "filterPushdown" not in plan:
            raise SkipTest("only FerretDB reports filterPushdown")
        self.assertTrue(plan["filterPushdown"])
        self.assertIn("USING INDEX", " ".join(plan["queryPlanner"]["Plan"]))


class UpdateMessageTests(TestCase):
    """Update messages, which the update-one-transaction patch writes per update in one
    transaction and whose SQL connections it releases per update, not per message."""

    timeout = 30

    async def test_one_message_of_300_updates_is_applied(self) -> None:
        """A bulk write of 300 UpdateOne in one message modifies all 300 (unpatched, a message
        of 100 or more updates held that many SQL connections and deadlocked the pool of 100)."""
        things = await scratch_collection(self)
        ids = [ObjectId() for _ in range(300)]
        await things.insert_many([{"_id": i, "n": 0} for i in ids])
        result = await things.bulk_write(
            [UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in ids], ordered=False
        )
        self.assertEqual((result.matched_count, result.modified_count), (300, 300))
        self.assertEqual(await things.count_documents({"n": 1}), 300)

    async def test_updates_of_one_message_see_each_other(self) -> None:
        """Two updates of the same document in one message are both applied: each update is
        written before the next one reads (why a message is not one transaction)."""
        things = await scratch_collection(self)
        await things.insert_one({"_id": "twice", "n": 0})
        await things.bulk_write([UpdateOne({"_id": "twice"}, {"$inc": {"n": 1}})] * 2)
        self.assertEqual((await things.find({"_id": "twice"}))[0]["n"], 2)

    async def test_update_many_larger_than_one_write_batch(self) -> None:
        """An update_many of 2,500 documents (more than the 1,000 one transaction holds) modifies
        each exactly once and reports the right counts; unmodified matches are not counted."""
        things = await scratch_collection(self)
        await things.insert_many([{"_id": n, "kind": "a", "n": n % 2} for n in range(2500)])
        result = await things.update_many({"kind": "a"}, {"$set": {"n": 1}})
        self.assertEqual((result.matched_count, result.modified_count), (2500, 1250))
        self.assertEqual(await things.count_documents({"n": 1}), 2500)

    async def test_a_failing_update_many_keeps_the_documents_before_the_failure(self) -> None:
        """When one document of an update_many cannot be updated, the error reaches the client
        and the documents updated before it stay updated, as without the patch."""
        things = await scratch_collection(self)
        docs: list[dict[str, Any]] = [{"_id": n, "kind": "a", "n": n} for n in range(10)]
        docs[5]["n"] = "not a number"
        for doc in docs:
            await things.insert_one(doc)
        with self.assertRaises(WriteError):
            await things.update_many({"kind": "a"}, {"$inc": {"n": 100}})
        after = {d["_id"]: d["n"] for d in await things.find({})}
        self.assertEqual([after[n] for n in range(5)], [100, 101, 102, 103, 104])
        self.assertEqual([after[n] for n in range(6, 10)], [6, 7, 8, 9])

    async def test_upserts_and_find_one_and_update_still_work(self) -> None:
        """An upserting update_many inserts when nothing matches and updates every match
        otherwise; find_one_and_update (written apart from the batched path) returns the
        document before or after and changes exactly one."""
        things = await scratch_collection(self)
        result = await things.update_many({"_id": "new"}, {"$set": {"n": 1}}, upsert=True)
        self.assertEqual(result.upserted_id, "new")
        await things.insert_many([{"_id": n, "kind": "b", "n": 0} for n in range(3)])
        result = await things.update_many({"kind": "b"}, {"$set": {"n": 5}}, upsert=True)
        self.assertEqual((result.matched_count, result.modified_count), (3, 3))
        self.assertIsNone(result.upserted_id)
        before = await things.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}})
        self.assertEqual(before["n"], 5)
        after = await things.find_one_and_update(
            {"_id": 2}, {"$inc": {"n": 2}}, return_document=ReturnDocument.AFTER
        )
        self.assertEqual(after["n"], 7)
        found = {d["_id"]: d["n"] for d in await things.find({})}
        self.assertEqual(found, {"new": 1, 0: 5, 1: 6, 2: 7})


def private_ferretdb(test: TestCase) -> PrivateDatabase:
    """``bin/db`` (so its SQLite settings too) on a free port and a folder of the test's own,
    where ``bin/db`` runs FerretDB."""
    if shutil.which("mongod"):
        raise SkipTest("bin/db runs mongod here, not FerretDB on SQLite")
    if not os.path.exists(ROOT / ".tools" / "bin" / "ferretdb"):
        raise SkipTest("needs FerretDB built by ./bin/setup")
    return PrivateDatabase(test)


def wal_bytes(server: PrivateDatabase, database: str) -> int:
    try:
        return os.stat(os.path.join(server.data, database + ".sqlite-wal")).st_size
    except FileNotFoundError:
        return 0


class WriterLockAndCheckpointTests(TestCase):
    """The writer-lock-checkpoints patch: one writer at a time per database, and checkpoints
    off the commit path that keep the WAL small."""

    timeout = 60

    async def test_concurrent_writers_all_succeed(self) -> None:
        """Eight concurrent insert_many batches, bulk updates and bulk deletes on one database,
        all waiting on the same writer lock, are all applied exactly (nothing deadlocks, nothing
        is refused as busy)."""
        things = await scratch_collection(self)
        batches = [[ObjectId() for _ in range(50)] for _ in range(8)]
        await gatherResults(
            [things.insert_many([{"_id": i, "n": 0} for i in ids]) for ids in batches]
        )
        await gatherResults(
            [
                things.bulk_write([UpdateOne({"_id": i}, {"$inc": {"n": 1}}) for i in ids])
                for ids in batches[:4]
            ]
            + [things.bulk_write([DeleteOne({"_id": i}) for i in ids]) for ids in batches[4:]]
            + [things.insert_many([{"_id": ObjectId(), "n": 2} for _ in range(50)])]
        )
        self.assertEqual(await things.count_documents({"n": 1}), 200)
        self.assertEqual(await things.count_documents({"n": 0}), 0)
        self.assertEqual(await things.count_documents({}), 250)

    async def test_the_wal_is_truncated_soon_after_a_burst_of_writes(self) -> None:
        """bin/db turns SQLite's own checkpoints off; the patched FerretDB checkpoints every
        250 ms instead and truncates the WAL once it is over 16 MiB: after writing about 24 MB,
        the WAL never got near 64 MiB and is back under 16 MiB within 3 s without more writes."""
        server = private_ferretdb(self)
        await server.start()
        pool = ConnectionPool(server.uri)
        self.addCleanup(pool.disconnect)
        things = pool.walcheck.things
        largest = 0
        for _ in range(30):
            await things.insert_many([{"pad": "x" * 8000} for _ in range(100)])
            largest = max(largest, wal_bytes(server, "walcheck"))
        self.assertLess(largest, 64 << 20)
        deadline = time.monotonic() + 3
        while wal_bytes(server, "walcheck") > 16 << 20:
            self.assertLess(time.monotonic(), deadline, "the WAL was not truncated within 3 s")
            await sleep(0.1)
