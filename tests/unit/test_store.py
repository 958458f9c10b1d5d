"""What the real ``Store`` sends to the database for each sign-up: every fact written once, in
the order the guarantees need, each update and deletion in the shape the database applies
fastest. The store runs on ``MemoryDatabase``, which records every operation, under the real
slow work, finish writer and hasher, on a ``Clock``."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from functools import partial
from typing import Any, cast

from bson import ObjectId
from pymongo.errors import WriteConcernError
from pymongo.write_concern import WriteConcern
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from txmongo.collection import Collection
from txmongo.database import Database

from squad.background.finishing import FinishWriter
from squad.background.hashing import PasswordHasher
from squad.background.slow_step import SlowWork
from squad.passwords import PasswordSealer
from squad.runtime.service_tree import recording_work
from squad.storage.documents import bson_now, retrying_fields
from squad.storage.store import (
    UNOWNED,
    ClaimInterrupted,
    FinishRound,
    PendingSignup,
    Store,
    insert_unordered,
)
from tests.fakes import (
    OWNER,
    START,
    ManualVerification,
    MemoryDatabase,
    Operation,
    is_fast_delete,
    is_fast_update,
)

INTERVAL = 0.2


def user_document(user_id: ObjectId, moment: datetime) -> dict[str, Any]:
    return {
        "_id": user_id,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "username": f"ada_{user_id}",
        "processed": False,
        "date_created": moment,
        "date_updated": moment,
    }


class StoreTestCase(SynchronousTestCase):
    """One process's sign-up pipeline (write, slow steps, hasher, finish writer) on the real
    ``Store`` over ``MemoryDatabase``."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.database = MemoryDatabase()
        self.store = Store(1.0, cast(Database, self.database))
        self.verification = ManualVerification()
        self.writer = FinishWriter(self.clock, self.store, interval=INTERVAL)
        self.sealer = PasswordSealer(bytes(range(32)))
        self.hashes = 0
        self.hasher = PasswordHasher(
            self.clock, self.sealer, self.store, self.writer, OWNER, hash_off_thread=self.hash
        )
        self.work = SlowWork(
            self.clock,
            self.store,
            self.verification,
            self.writer,
            OWNER,
            on_adopted=self.hasher.enqueue,
        )
        self.hasher.on_batch_hashed = self.work.passwords_done
        self.work.startService()
        self.addCleanup(self.stop)
        self.write = recording_work(
            partial(self.store.insert_signups, hasher=OWNER), self.work, self.hasher
        )

    def stop(self) -> None:
        if self.hasher.running:
            self.successResultOf(self.hasher.stopService())
        self.successResultOf(self.work.stopService())

    def hash(self, password: str) -> Deferred[str]:
        self.hashes += 1
        return succeed(f"$argon2id$fake-{self.hashes}")

    def sign_up(self, count: int) -> list[PendingSignup]:
        """A batch of sign-ups as the API hands it to the group commit; each user's step
        starts once the batch is written."""
        items = []
        for number in range(count):
            user_id = ObjectId()
            items.append(
                PendingSignup(
                    user=user_document(user_id, bson_now(self.clock.seconds())),
                    sealed_password=self.sealer.seal(
                        f"password {number}", associated=user_id.binary
                    ),
                    owner=self.work.owner_for_new_signup(),
                )
            )
        self.successResultOf(ensureDeferred(self.write(items)))
        for item in items:
            self.work.accept(item.user_id)
        return items

    def finish_steps(self) -> None:
        for waiting in self.verification.waiting:
            if not waiting.called:
                waiting.callback(None)
        self.clock.advance(INTERVAL)

    def hash_all(self) -> None:
        self.hasher.startService()
        self.clock.advance(INTERVAL)

    def writes_since(self, start: int) -> list[Operation]:
        return [op for op in self.database.operations[start:] if op.writes]

    def assert_each_fact_written_once(self, items: list[PendingSignup]) -> None:
        """Each user inserted once, set processed once and given its hash once; each sealed
        password in exactly one write; every update and deletion in the fast shape; nothing
        left but the users, processed and hashed."""
        inserted: Counter[ObjectId] = Counter()
        processed: Counter[ObjectId] = Counter()
        hashed: Counter[ObjectId] = Counter()
        sealed: Counter[bytes] = Counter()
        for op in self.database.writes():
            for document in op.documents:
                if op.collection == "users":
                    inserted[document["_id"]] += 1
                for secret in document.get("sealed", []):
                    sealed[secret] += 1
            for filter, update in op.updates:
                self.assertTrue(is_fast_update(filter, update), (op, filter, update))
                ids = filter["_id"]["$in"] if isinstance(filter["_id"], dict) else [filter["_id"]]
                for user_id in ids:
                    if update["$set"].get("processed") is True:
                        processed[user_id] += 1
                    if "password_hash" in update["$set"]:
                        hashed[user_id] += 1
            if op.method.startswith("delete"):
                self.assertTrue(is_fast_delete(op.filter or {}), op)
        user_ids = [item.user_id for item in items]
        for counter in (inserted, processed, hashed):
            self.assertEqual(dict(counter), dict.fromkeys(user_ids, 1))
        self.assertEqual(dict(sealed), {item.sealed_password: 1 for item in items})
        for name in ("pending", "sealed_passwords"):
            self.assertEqual(self.database.documents(name), {}, name)
        for user in self.database.documents("users").values():
            self.assertIs(user["processed"], True)
            self.assertTrue(user["password_hash"].startswith("$argon2id$fake-"))


def two_signups(owner: str) -> list[PendingSignup]:
    """Two sign-ups of one batch whose slow steps are ``owner``'s, sealed "sealed 0" and 1."""
    return [
        PendingSignup(
            user=user_document(ObjectId(), bson_now(START)),
            sealed_password=b"sealed %d" % n,
            owner=owner,
        )
        for n in range(2)
    ]


class SignupWriteTests(StoreTestCase):
    def test_a_batch_of_its_own_writes_one_work_document_then_the_users(self) -> None:
        """A batch whose slow steps run in the process that accepted it writes one work
        document, its sealed passwords with the users' ids (the record of its steps too),
        and its users only once that is acknowledged."""
        self.database.hold("sealed_passwords", "insert")
        items = two_signups(OWNER)
        written = ensureDeferred(self.store.insert_signups(items, OWNER))
        (work,) = self.database.writes()
        user_ids = [item.user_id for item in items]
        self.assertEqual(
            work.documents,
            (
                {
                    "_id": items[0].work_batch,
                    "owner": OWNER,
                    "users": user_ids,
                    "sealed": [b"sealed 0", b"sealed 1"],
                },
            ),
        )
        self.database.release()
        self.successResultOf(written)
        users = self.database.writes()[-1]
        self.assertEqual((users.collection, users.method), ("users", "insert"))
        self.assertEqual([doc["_id"] for doc in users.documents], user_ids)
        self.assertEqual(len(self.database.writes()), 2)
        self.assertEqual(self.database.documents("pending"), {})

    def test_overflow_also_gets_a_pending_document_sent_alongside(self) -> None:
        """Overflow (slow steps left to any process) writes two work documents at once, and
        its users only once both are acknowledged: a small pending document (owner, ids)
        and, under the same id, the sealed passwords owned by this process's hasher."""
        self.database.hold("pending", "insert")
        self.database.hold("sealed_passwords", "insert")
        items = two_signups(UNOWNED)
        written = ensureDeferred(self.store.insert_signups(items, "the hasher"))
        self.assertEqual(
            sorted(op.collection for op in self.database.writes()), ["pending", "sealed_passwords"]
        )
        (pending,), (sealed,) = (
            op.documents for op in sorted(self.database.writes(), key=lambda op: op.collection)
        )
        user_ids = [item.user_id for item in items]
        self.assertEqual(pending, {"_id": pending["_id"], "owner": UNOWNED, "users": user_ids})
        self.assertEqual(
            sealed,
            {
                "_id": pending["_id"],
                "owner": "the hasher",
                "users": user_ids,
                "sealed": [b"sealed 0", b"sealed 1"],
            },
        )
        _, first = self.database.held[0]
        first.callback(None)
        self.assertEqual(len(self.database.writes()), 2)  # the users wait for both
        self.database.release()
        self.successResultOf(written)
        users = self.database.writes()[-1]
        self.assertEqual((users.collection, users.method), ("users", "insert"))
        self.assertEqual([doc["_id"] for doc in users.documents], user_ids)
        self.assertEqual([item.work_batch for item in items], [pending["_id"]] * 2)

    def test_a_retried_batch_writes_the_same_work_documents(self) -> None:
        """A second attempt of a batch whose work landed finds its documents already there
        and writes its users: a duplicate work document is success."""
        items = [
            PendingSignup(
                user=user_document(ObjectId(), bson_now(START)), sealed_password=b"s", owner=OWNER
            )
        ]
        self.database.hold("users", "insert")
        first = ensureDeferred(self.store.insert_signups(items, OWNER))
        (batch_id,) = self.database.documents("sealed_passwords")
        first.cancel()  # the attempt gave up after its work landed
        self.failureResultOf(first)
        self.database.release()
        self.successResultOf(ensureDeferred(self.store.insert_signups(items, OWNER)))
        self.assertEqual(items[0].error, None)
        self.assertEqual(list(self.database.documents("sealed_passwords")), [batch_id])
        self.assertIn(items[0].user_id, self.database.documents("users"))


class EachFactOnceTests(StoreTestCase):
    def test_under_load_the_steps_end_first_and_nothing_is_copied(self) -> None:
        """When the slow steps end before the hashes (always, under load): one update marks
        the batch's users processed; later one update per user sets its hash and the batch's
        one work document goes. Five writes for the batch, and no sealed password is ever
        written twice."""
        items = self.sign_up(3)
        user_ids = [item.user_id for item in items]
        self.assertEqual(
            [(op.collection, op.method) for op in self.database.writes()],
            [("sealed_passwords", "insert"), ("users", "insert")],
        )
        start = len(self.database.operations)
        self.finish_steps()
        now = bson_now(self.clock.seconds())
        batch_id = items[0].work_batch
        self.assertEqual(
            self.writes_since(start),
            [
                Operation(
                    "users",
                    "update_many",
                    updates=(
                        (
                            {"_id": {"$in": user_ids}},
                            {"$set": {"processed": True, "date_updated": now}},
                        ),
                    ),
                ),
            ],
        )
        start = len(self.database.operations)
        self.hash_all()
        hashes = self.writes_since(start)
        self.assertEqual(
            hashes[-1:],
            [Operation("sealed_passwords", "delete_many", filter={"_id": {"$in": [batch_id]}})],
        )
        (bulk,) = hashes[:-1]
        self.assertEqual(
            bulk.updates,
            tuple(
                ({"_id": user_id}, {"$set": {"password_hash": f"$argon2id$fake-{n}"}})
                for n, user_id in enumerate(user_ids, 1)
            ),
        )
        self.assertEqual(len(self.database.writes()), 5)
        self.assert_each_fact_written_once(items)

    def test_at_low_load_the_hashes_end_first(self) -> None:
        """When the hashes are written before the slow steps end (low load), the work
        document stays, as the record of the steps, until they end; each fact is still
        written once and the document deleted once."""
        items = self.sign_up(2)
        self.hash_all()
        self.assertEqual(len(self.database.documents("sealed_passwords")), 1)
        self.assertEqual(self.database.documents("pending"), {})
        self.finish_steps()
        self.assertEqual(len(self.database.writes()), 5)
        self.assert_each_fact_written_once(items)

    def test_a_hash_ready_with_its_processed_update_shares_it(self) -> None:
        """A user whose hash and slow step finish in the same round gets one update carrying
        both, and its batch's work document goes in that round."""
        items = self.sign_up(2)
        self.hasher.startService()  # hashed now, written at the next round
        start = len(self.database.operations)
        self.finish_steps()
        now = bson_now(self.clock.seconds())
        writes = self.writes_since(start)
        self.assertEqual(
            [(op.collection, op.method) for op in writes],
            [("users", "bulk_write"), ("sealed_passwords", "delete_many")],
        )
        self.assertEqual(
            writes[0].updates[0],
            (
                {"_id": items[0].user_id},
                {
                    "$set": {
                        "password_hash": "$argon2id$fake-1",
                        "processed": True,
                        "date_updated": now,
                    }
                },
            ),
        )
        self.assertEqual(len(self.database.writes()), 4)
        self.assert_each_fact_written_once(items)

    def test_the_batches_finished_in_one_round_go_in_one_deletion(self) -> None:
        """Several batches whose steps end in one round: one update of all their users; once
        hashed in one round, one deletion of all their work documents."""
        batches = [self.sign_up(2) for _ in range(3)]
        start = len(self.database.operations)
        self.finish_steps()
        (update,) = self.writes_since(start)
        self.assertEqual(
            update.updates[0][0],
            {"_id": {"$in": [item.user_id for items in batches for item in items]}},
        )
        start = len(self.database.operations)
        self.hash_all()
        deletion = self.writes_since(start)[-1]
        self.assertEqual(
            deletion,
            Operation(
                "sealed_passwords",
                "delete_many",
                filter={"_id": {"$in": [items[0].work_batch for items in batches]}},
            ),
        )
        self.assert_each_fact_written_once([item for items in batches for item in items])


class FinishRoundShapeTests(StoreTestCase):
    def test_every_update_of_a_round_is_a_set_of_top_level_scalars_by_id(self) -> None:
        """Retries, attempts, hashes and the processed mark are all top-level scalars set by
        ``_id``: no sub-document, no array, no other operator."""
        now = bson_now(START)
        retried, first, hashed = ObjectId(), ObjectId(), ObjectId()
        round = FinishRound(
            processed={0: [first], 3: [retried]},
            fields={
                hashed: {"password_hash": "$argon2id$h"},
                ObjectId(): retrying_fields(2, "the verifier answered HTTP 502", now),
            },
        )
        self.successResultOf(ensureDeferred(self.store.apply_finishes(round, now)))
        updates = [pair for op in self.database.writes() for pair in op.updates]
        self.assertEqual(len(updates), 4)
        for filter, update in updates:
            self.assertTrue(is_fast_update(filter, update), update)
        self.assertEqual(
            updates[1][1],
            {
                "$set": {
                    "processed": True,
                    "verification_state": "verified",
                    "verification_attempts": 3,
                    "date_updated": now,
                }
            },
        )

    def test_a_retried_step_is_recorded_in_fast_updates_too(self) -> None:
        """A failed slow step records its retry, and its later success, with updates of the
        fast shape."""
        (item,) = self.sign_up(1)
        self.verification.fail(RuntimeError("the verifier is down"))
        self.clock.advance(INTERVAL)
        user = self.database.documents("users")[item.user_id]
        self.assertEqual(user["verification_state"], "retrying")
        self.clock.advance(2)  # the backoff
        self.finish_steps()
        user = self.database.documents("users")[item.user_id]
        self.assertEqual((user["verification_state"], user["processed"]), ("verified", True))
        self.hash_all()
        for op in self.database.writes():
            for filter, update in op.updates:
                self.assertTrue(is_fast_update(filter, update), update)


class OlderVersionTests(StoreTestCase):
    def seed_old_batch(self, hashed: bool) -> tuple[ObjectId, ObjectId, ObjectId]:
        """A batch as an older squad left it: its sealed passwords inside its pending
        document, owned by a process that died; one of its two users hashed or not."""
        first, second = ObjectId(), ObjectId()
        users = self.database.documents("users")
        for user_id in (first, second):
            users[user_id] = user_document(user_id, bson_now(START))
        if hashed:
            users[first]["password_hash"] = "$argon2id$old"
        batch_id = ObjectId()
        self.database.documents("pending")[batch_id] = {
            "_id": batch_id,
            "owner": "dead",
            "users": [first, second],
            "sealed": [
                self.sealer.seal("first", associated=first.binary),
                self.sealer.seal("second", associated=second.binary),
            ],
        }
        return batch_id, first, second

    def test_an_older_pending_document_is_finished_and_hashed(self) -> None:
        """After an upgrade, a dead process's pending document in the older shape is adopted:
        its passwords not hashed yet are copied once to sealed_passwords for this process,
        hashed, and every document of the batch goes."""
        batch_id, first, second = self.seed_old_batch(hashed=True)
        self.assertTrue(self.successResultOf(ensureDeferred(self.work.refill(["dead"]))))
        carried = self.database.documents("sealed_passwords")[batch_id]
        self.assertEqual((carried["owner"], carried["users"]), (OWNER, [second]))
        self.finish_steps()
        self.hash_all()
        users = self.database.documents("users")
        self.assertEqual(users[first]["password_hash"], "$argon2id$old")
        self.assertEqual(users[second]["password_hash"], "$argon2id$fake-1")
        self.assertTrue(users[first]["processed"] and users[second]["processed"])
        for name in ("pending", "sealed_passwords"):
            self.assertEqual(self.database.documents(name), {}, name)

    def test_an_older_batch_already_moved_is_not_copied_again(self) -> None:
        """An older process that moved a batch's passwords to sealed_passwords and died before
        deleting its pending document: the copy finds them there and leaves them to the
        take-over of sealed passwords, which hashes each once."""
        batch_id, first, second = self.seed_old_batch(hashed=False)
        old = self.database.documents("pending")[batch_id]
        self.database.documents("sealed_passwords")[batch_id] = dict(old)
        self.hasher.startService()
        self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.assertEqual(self.database.documents("sealed_passwords")[batch_id]["owner"], "dead")
        self.assertEqual(self.hashes, 0)
        self.assertTrue(self.successResultOf(ensureDeferred(self.hasher.refill(["dead"]))))
        self.finish_steps()
        self.assertEqual(self.hashes, 2)
        users = self.database.documents("users")
        self.assertEqual(
            {users[first]["password_hash"], users[second]["password_hash"]},
            {"$argon2id$fake-1", "$argon2id$fake-2"},
        )
        for name in ("pending", "sealed_passwords"):
            self.assertEqual(self.database.documents(name), {}, name)


class InterruptedAdoptionTests(StoreTestCase):
    def test_batches_claimed_by_an_interrupted_adoption_are_adopted_at_the_next_refill(
        self,
    ) -> None:
        """When the database goes away after an adoption's claims were sent, the claimed
        batches (now this process's in the database, held nowhere) are adopted again by id at
        the next refill, and their users processed: a live owner's batches would otherwise
        wait for its death."""
        user_id = ObjectId()
        self.database.documents("users")[user_id] = user_document(user_id, bson_now(START))
        batch_id = ObjectId()
        self.database.documents("pending")[batch_id] = {
            "_id": batch_id,
            "owner": "dead",
            "users": [user_id],
        }
        self.database.fail("users", "find")  # the read after the claims
        self.failureResultOf(ensureDeferred(self.work.refill(["dead"])), ClaimInterrupted)
        self.assertEqual(self.database.documents("pending")[batch_id]["owner"], OWNER)
        self.assertEqual(self.verification.calls, [])
        self.assertTrue(self.successResultOf(ensureDeferred(self.work.refill(["dead"]))))
        self.assertEqual(self.verification.calls, [user_id])
        self.finish_steps()
        self.assertIs(self.database.documents("users")[user_id]["processed"], True)
        self.assertEqual(self.database.documents("pending"), {})


class FlushTests(StoreTestCase):
    def test_delete_collections_drops_every_collection_of_sign_ups(self) -> None:
        """DELETE /collections drops the users, both work collections and the idempotency
        records, then counts the flush."""
        self.successResultOf(ensureDeferred(self.store.delete_everything()))
        self.assertEqual(
            [(op.collection, op.method) for op in self.database.writes()],
            [
                ("users", "drop"),
                ("pending", "drop"),
                ("sealed_passwords", "drop"),
                ("idempotency_keys", "drop"),
                ("processes", "update_one"),
            ],
        )


class TakeOverTests(StoreTestCase):
    """A dead process's batches, taken over in the lease's rounds, each in the service tree's
    order: the slow work's take-over, then the hasher's."""

    def seed_batch(
        self, processed: list[bool], with_pending: bool
    ) -> tuple[ObjectId, list[ObjectId]]:
        """A batch a dead process left: its users (processed or not), its passwords document
        and, in the previous version's shape, a pending document too."""
        users = self.database.documents("users")
        user_ids = [ObjectId() for _ in processed]
        for user_id, done in zip(user_ids, processed, strict=True):
            users[user_id] = {**user_document(user_id, bson_now(START)), "processed": done}
        batch_id = ObjectId()
        self.database.documents("sealed_passwords")[batch_id] = {
            "_id": batch_id,
            "owner": "dead",
            "users": list(user_ids),
            "sealed": [self.sealer.seal("pw", associated=u.binary) for u in user_ids],
        }
        if with_pending:
            self.database.documents("pending")[batch_id] = {
                "_id": batch_id,
                "owner": "dead",
                "users": [u for u, done in zip(user_ids, processed, strict=True) if not done],
            }
        return batch_id, user_ids

    def take_over(self) -> int:
        """Lease rounds until both take-overs saw all of the dead owner's work (the lease
        then forgets it); how many rounds that took."""
        self.hasher.startService()
        for rounds in range(1, 4):
            steps = self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
            passwords = self.successResultOf(ensureDeferred(self.hasher.refill(["dead"])))
            if steps and passwords:
                return rounds
        self.fail("the dead owner's work was never all taken over")

    def test_steps_recorded_by_a_passwords_document_alone_are_taken_over(self) -> None:
        """The steps still to run of a dead process's batch, recorded only by its passwords
        document, are set down in pending for their dead owner before that document is
        claimed, then adopted and run; in the end every user is processed and hashed and
        nothing is left."""
        batch_id, (done, left) = self.seed_batch([True, False], with_pending=False)
        start = len(self.database.operations)
        self.assertEqual(self.take_over(), 2)  # the steps recorded in round 1 are adopted in 2
        writes = [(op.collection, op.method) for op in self.writes_since(start)]
        self.assertLess(
            writes.index(("pending", "insert")),
            writes.index(("sealed_passwords", "update_many")),
        )
        inserted = next(op for op in self.writes_since(start) if op.collection == "pending")
        self.assertEqual(inserted.documents, ({"_id": batch_id, "owner": "dead", "users": [left]},))
        self.assertEqual(self.verification.calls, [left])
        self.finish_steps()
        self.hash_all()
        self.finish_steps()
        users = self.database.documents("users")
        for user_id in (done, left):
            self.assertIs(users[user_id]["processed"], True)
            self.assertTrue(users[user_id]["password_hash"].startswith("$argon2id$fake-"))
        for name in ("pending", "sealed_passwords"):
            self.assertEqual(self.database.documents(name), {}, name)

    def test_a_batch_whose_steps_all_ran_records_nothing(self) -> None:
        """A dead process's batch whose users are all processed (its steps ended before its
        hashes, as under load) only has its passwords taken over: no pending document."""
        self.seed_batch([True, True], with_pending=False)
        start = len(self.database.operations)
        self.assertEqual(self.take_over(), 1)
        self.assertNotIn("pending", {op.collection for op in self.writes_since(start)})
        self.assertEqual(self.verification.calls, [])

    def test_the_previous_versions_pending_document_is_kept_as_it_is(self) -> None:
        """A batch left in the previous version's shape (a pending document beside its
        passwords) keeps that document: the take-over's record of the same steps is a
        duplicate, and the steps run once."""
        batch_id, (left,) = self.seed_batch([False], with_pending=True)
        self.assertEqual(self.take_over(), 1)
        self.assertEqual(self.database.documents("pending")[batch_id]["owner"], OWNER)
        self.assertEqual(self.verification.calls, [left])


class _AnsweringDatabase:
    """A ``Database`` stand-in that records each command and answers with ``reply``."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.commands: list[dict[str, Any]] = []

    def command(self, command: dict[str, Any], **options: Any) -> Deferred[dict[str, Any]]:
        self.commands.append(command)
        return succeed(self.reply)


class _Collection:
    def __init__(self, database: _AnsweringDatabase, concern: WriteConcern) -> None:
        self.database = database
        self.name = "users"
        self.write_concern = concern


class InsertUnorderedTests(SynchronousTestCase):
    def insert(
        self, reply: dict[str, Any], concern: WriteConcern | None = None
    ) -> tuple[Deferred[list[dict[str, Any]]], _AnsweringDatabase]:
        database = _AnsweringDatabase(reply)
        collection = _Collection(database, concern or WriteConcern())
        documents = [{"_id": 1}, {"_id": 2}]
        inserted = ensureDeferred(insert_unordered(cast(Collection, collection), documents, 1.0))
        return inserted, database

    def test_one_unordered_insert_command_carries_the_documents(self) -> None:
        """A batch is one ``insert`` command, unordered, with its documents in the body and
        no write concern of its own when the connection's is the server's default."""
        inserted, database = self.insert({"ok": 1, "n": 2})
        self.assertEqual(self.successResultOf(inserted), [])
        self.assertEqual(
            database.commands,
            [{"insert": "users", "documents": [{"_id": 1}, {"_id": 2}], "ordered": False}],
        )

    def test_the_connections_write_concern_is_sent(self) -> None:
        """A write concern set on the connection (majority, say) goes with the command, as
        txmongo's own writes send it."""
        _, database = self.insert({"ok": 1, "n": 2}, WriteConcern(w="majority"))
        self.assertEqual(database.commands[0]["writeConcern"], {"w": "majority"})

    def test_refused_documents_come_back_by_index(self) -> None:
        """The documents the database refused come back as its write errors; the rest count
        as written."""
        refused = {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"}
        inserted, _ = self.insert({"ok": 1, "n": 1, "writeErrors": [refused]})
        self.assertEqual(self.successResultOf(inserted), [refused])

    def test_a_write_concern_not_met_fails_the_whole_insert(self) -> None:
        """Written but not as durably as asked: the insert fails, so none of its sign-ups
        is acknowledged."""
        inserted, _ = self.insert(
            {"ok": 1, "n": 2, "writeConcernError": {"code": 64, "errmsg": "waiting timed out"}}
        )
        failure = self.failureResultOf(inserted, WriteConcernError)
        self.assertIn("waiting timed out", str(failure.value))
