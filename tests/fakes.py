"""In-memory test doubles for squad's unit tests: a fake ``Store``, a verification the test
drives by hand, a hasher that only records, and the HTTP app wired to them over ``StubTreq``.

These fakes pin *logic* (what the API and the slow work ask of the database, and when); they
know nothing of MongoDB's semantics beyond the few the logic relies on (``_id`` keys, ``$set``
without upsert, adoption of unowned work). The integration tests cover the real database.

Every fake ``Store`` method passes through a gate first, so a test can make any of them fail
(``make_fail``) or hang on an unfired Deferred (``make_hang``), then fire that Deferred later
(``hung``) to let the call go on, or errback it to fail it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bson import ObjectId
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError
from pymongo.write_concern import WriteConcern
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from squad.background.finishing import FinishWriter
from squad.background.hashing import PasswordHasher
from squad.background.resilience import Backoff
from squad.background.slow_step import SlowWork
from squad.http.routes import SquadAPI
from squad.http.site import LimitedRequest, SquadSite
from squad.passwords import PasswordSealer
from squad.runtime.service_tree import recording_work
from squad.storage.documents import verified_fields
from squad.storage.group_commit import GroupCommit
from squad.storage.store import (
    UNOWNED,
    AdoptedBatch,
    FinishRound,
    IStore,
    LeaseView,
    PendingSignup,
    SealedBatch,
    WorkBatch,
    WriteRefused,
)
from tests.http_harness import InMemorySite

__all__ = [
    "OWNER",
    "START",
    "FakeStore",
    "ManualVerification",
    "MemoryDatabase",
    "Operation",
    "Squad",
    "StoreDown",
    "error_body",
    "is_fast_delete",
    "is_fast_update",
    "quick_hasher",
]

OWNER = "test-host:1:abcdef01"

DUPLICATE_KEY = 11000

#: Where the fake clocks start: 2023-11-14T22:13:20Z, so dates look like dates.
START = 1_700_000_000.0

#: Every method of ``Store`` that squad's logic calls; the fake gates each of them.
STORE_METHODS = (
    "ping",
    "insert_signups",
    "find_user",
    "find_idempotency_record",
    "insert_idempotency_record",
    "replace_idempotency_record",
    "apply_finishes",
    "find_sealed",
    "sealed_batches_of",
    "claim_sealed",
    "record_steps_left",
    "record_steps",
    "find_work",
    "heartbeat",
    "lease_view",
    "mark_stopped",
    "forget_process",
    "adopt",
    "delete_everything",
    "last_flush",
)


class StoreDown(Exception):
    """What a failing fake store raises: the database did not answer."""


@implementer(IStore)
class FakeStore:
    """Squad's ``Store`` in memory, with switches to make any call fail or hang.

    ``calls`` lists every call in order as ``(method, arguments)``; ``events`` lists the
    effects (``("update", id)``, ``("delete_pending", id)``...) in the order they happened.
    """

    def __init__(self) -> None:
        self.timeout = 1.0
        self.user_docs: dict[ObjectId, dict[str, Any]] = {}
        #: ``pending``: one document per batch of slow steps, by batch id.
        self.pending_docs: dict[ObjectId, dict[str, Any]] = {}
        #: ``sealed_passwords``: one document per batch of passwords to hash, by batch id.
        self.sealed_docs: dict[ObjectId, dict[str, Any]] = {}
        self.process_docs: dict[str, dict[str, Any]] = {}
        self.flushes = 0
        self.idempotency_docs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.events: list[tuple[str, Any]] = []
        #: Which users' inserts the database refuses, one by one (a duplicate key, say).
        self.refuse: Callable[[dict[str, Any]], bool] = lambda user: False
        self._failing: dict[str, int | None] = {}
        self._hanging: set[str] = set()
        self._hung: dict[str, list[Deferred[None]]] = {}

    # -- switches -----------------------------------------------------------------------------

    def make_fail(self, method: str, times: int | None = None) -> None:
        """Fail the next ``times`` calls of ``method`` with ``StoreDown`` (all, when None)."""
        assert method in STORE_METHODS, method
        self._failing[method] = times

    def make_hang(self, method: str) -> None:
        """Calls of ``method`` wait on an unfired Deferred (see ``hung``) from now on."""
        assert method in STORE_METHODS, method
        self._hanging.add(method)

    def heal(self, method: str | None = None) -> None:
        """Stop failing or hanging new calls (of ``method``, or of every method)."""
        for name in [method] if method else list(STORE_METHODS):
            self._failing.pop(name, None)
            self._hanging.discard(name)

    def hung(self, method: str) -> list[Deferred[None]]:
        """The Deferreds that hanging calls of ``method`` wait on: callback to let each go on."""
        return self._hung.setdefault(method, [])

    def called(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def _gate(self, method: str, *arguments: Any) -> Deferred[None]:
        self.calls.append((method, arguments))
        if method in self._failing:
            left = self._failing[method]
            if left is not None:
                if left <= 1:
                    del self._failing[method]
                else:
                    self._failing[method] = left - 1
            return fail(Failure(StoreDown(f"the fake database is down ({method})")))
        if method in self._hanging:
            waiting: Deferred[None] = Deferred()
            self.hung(method).append(waiting)
            return waiting
        return succeed(None)

    # -- seeding ------------------------------------------------------------------------------

    def seed_user(
        self,
        user_id: ObjectId | None = None,
        *,
        owner: str | None = UNOWNED,
        sealed: bytes | None = b"sealed",
        processed: bool = False,
        password_hash: str | None = None,
        created: datetime | None = None,
    ) -> ObjectId:
        """Store a user, bypassing the gates, with its work in a batch of its own owned by
        ``owner`` (none when ``owner`` is None): a ``pending`` document and, unless ``sealed``
        is None, a ``sealed_passwords`` document under the same id holding ``sealed``."""
        user_id = user_id or ObjectId()
        moment = created or datetime(2024, 1, 1)
        user: dict[str, Any] = {
            "_id": user_id,
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "username": "ada_lovelace",
            "processed": processed,
            "date_created": moment,
            "date_updated": moment,
        }
        if password_hash is not None:
            user["password_hash"] = password_hash
        self.user_docs[user_id] = user
        if owner is not None:
            batch_id = self.seed_pending([user_id], owner)
            if sealed is not None:
                self.seed_sealed([(user_id, sealed)], owner, batch_id)
        return user_id

    def seed_pending(
        self, user_ids: list[ObjectId], owner: str, sealed: list[bytes] | None = None
    ) -> ObjectId:
        """A ``pending`` batch of these users; with ``sealed``, in the shape an older squad
        wrote: their sealed passwords inside."""
        batch_id = ObjectId()
        self.pending_docs[batch_id] = {"_id": batch_id, "owner": owner, "users": list(user_ids)}
        if sealed is not None:
            self.pending_docs[batch_id]["sealed"] = list(sealed)
        return batch_id

    def seed_sealed(
        self,
        passwords: list[tuple[ObjectId, bytes]],
        owner: str,
        batch_id: ObjectId | None = None,
    ) -> ObjectId:
        """A ``sealed_passwords`` batch of these passwords for ``owner`` to hash."""
        batch_id = batch_id or ObjectId()
        self.sealed_docs[batch_id] = {
            "_id": batch_id,
            "owner": owner,
            "users": [user_id for user_id, _ in passwords],
            "sealed": [sealed for _, sealed in passwords],
        }
        return batch_id

    def pending_users(self) -> set[ObjectId]:
        """Every user some ``pending`` batch still lists."""
        return {user_id for doc in self.pending_docs.values() for user_id in doc["users"]}

    def sealed_users(self) -> set[ObjectId]:
        """Every user whose sealed password some batch still holds (older pending included)."""
        return {
            user_id
            for docs in (self.pending_docs, self.sealed_docs)
            for doc in docs.values()
            for user_id in doc["users"][: len(doc.get("sealed", []))]
        }

    # -- Store --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._gate("ping")

    async def insert_signups(self, batch: list[PendingSignup], hasher: str) -> None:
        await self._gate("insert_signups", list(batch), hasher)
        work = [item for item in batch if item.error is None]
        # Like the real store: the work documents first, then the users (which may collide).
        groups: dict[str, list[PendingSignup]] = {}
        for item in work:
            groups.setdefault(item.owner, []).append(item)
        for owner, items in groups.items():
            batch_id = items[0].work_batch or ObjectId()
            for item in items:
                item.work_batch = batch_id
            if owner != hasher:  # like the real store: only overflow gets a pending document
                self.pending_docs.setdefault(
                    batch_id,
                    {"_id": batch_id, "owner": owner, "users": [i.user_id for i in items]},
                )
            self.sealed_docs.setdefault(
                batch_id,
                {
                    "_id": batch_id,
                    "owner": hasher,
                    "users": [i.user_id for i in items],
                    "sealed": [i.sealed_password for i in items],
                },
            )
        for item in work:
            if self.refuse(item.user) or item.user_id in self.user_docs:
                item.error = WriteRefused(f"E11000 duplicate key: {item.user_id}")
                continue
            self.user_docs[item.user_id] = copy.deepcopy(item.user)
            self.events.append(("insert", item.user_id))

    async def find_user(self, user_id: ObjectId) -> dict[str, Any] | None:
        await self._gate("find_user", user_id)
        found = self.user_docs.get(user_id)
        return copy.deepcopy(found) if found is not None else None

    async def find_idempotency_record(self, key: str) -> dict[str, Any] | None:
        await self._gate("find_idempotency_record", key)
        found = self.idempotency_docs.get(key)
        return copy.deepcopy(found) if found is not None else None

    async def insert_idempotency_record(self, record: dict[str, Any]) -> bool:
        await self._gate("insert_idempotency_record", copy.deepcopy(record))
        if record["_id"] in self.idempotency_docs:
            return False
        self.idempotency_docs[record["_id"]] = copy.deepcopy(record)
        return True

    async def replace_idempotency_record(self, record: dict[str, Any]) -> None:
        await self._gate("replace_idempotency_record", copy.deepcopy(record))
        self.idempotency_docs[record["_id"]] = copy.deepcopy(record)

    async def apply_finishes(self, round: FinishRound, now: datetime) -> None:
        await self._gate("apply_finishes", copy.deepcopy(round), now)
        # Like the real store: the users' updates first, then the work documents' deletions.
        for attempts, user_ids in round.processed.items():
            for user_id in user_ids:
                self._set(user_id, {**verified_fields(attempts), "date_updated": now})
        for user_id, fields in round.fields.items():
            extra = {"date_updated": now} if "processed" in fields else {}
            self._set(user_id, {**fields, **extra})
        for batch_id in round.pending_done:
            self.pending_docs.pop(batch_id, None)
            self.events.append(("delete_pending", batch_id))
        for batch_id in round.sealed_done:
            self.sealed_docs.pop(batch_id, None)
            self.events.append(("delete_sealed", batch_id))

    def _set(self, user_id: ObjectId, fields: dict[str, Any]) -> None:
        user = self.user_docs.get(user_id)
        if user is not None:  # $set without upsert
            user.update(copy.deepcopy(fields))
        self.events.append(("update", user_id))

    async def find_sealed(self, batch_id: ObjectId) -> SealedBatch | None:
        await self._gate("find_sealed", batch_id)
        doc = self.sealed_docs.get(batch_id)
        if doc is None:
            return None
        return SealedBatch(batch_id, tuple(zip(doc["users"], doc["sealed"], strict=True)))

    async def sealed_batches_of(self, owners: Sequence[str]) -> list[WorkBatch]:
        await self._gate("sealed_batches_of", tuple(owners))
        return [
            WorkBatch(batch_id, doc["owner"], tuple(doc["users"]))
            for batch_id, doc in self.sealed_docs.items()
            if doc["owner"] in owners
        ]

    async def record_steps_left(self, batches: Sequence[WorkBatch]) -> int:
        await self._gate("record_steps_left", tuple(batches))
        return self._record(
            [
                WorkBatch(batch.batch_id, batch.owner, left)
                for batch in batches
                if (
                    left := tuple(
                        user_id
                        for user_id in batch.users
                        if user_id in self.user_docs
                        and not self.user_docs[user_id].get("processed")
                    )
                )
            ]
        )

    async def record_steps(self, records: Sequence[WorkBatch]) -> int:
        await self._gate("record_steps", tuple(records))
        return self._record(records)

    def _record(self, records: Sequence[WorkBatch]) -> int:
        written = 0
        for record in records:
            if record.batch_id not in self.pending_docs:
                self.pending_docs[record.batch_id] = {
                    "_id": record.batch_id,
                    "owner": record.owner,
                    "users": list(record.users),
                }
                self.events.append(("record_steps", record.batch_id))
                written += 1
        return written

    async def claim_sealed(self, owner: str, batch_ids: Sequence[ObjectId]) -> None:
        await self._gate("claim_sealed", owner, tuple(batch_ids))
        for batch_id in batch_ids:
            if batch_id in self.sealed_docs:
                self.sealed_docs[batch_id]["owner"] = owner

    async def heartbeat(self, owner: str, alive_until: datetime, about: dict[str, Any]) -> None:
        await self._gate("heartbeat", owner, alive_until, about)
        self.process_docs[owner] = {"_id": owner, "alive_until": alive_until, **about}

    async def last_flush(self) -> tuple[int, datetime]:
        await self._gate("last_flush")
        return self.flushes, datetime(1970, 1, 1)

    async def lease_view(self, now: datetime) -> LeaseView:
        await self._gate("lease_view", now)
        view = LeaseView()
        for owner, doc in self.process_docs.items():
            (view.dead if doc["alive_until"] < now else view.live).append(owner)
        marks = [doc["unowned_at"] for doc in self.process_docs.values() if "unowned_at" in doc]
        view.unowned_at = max(marks) if marks else None
        return view

    async def mark_stopped(self, owner: str, unowned_at: datetime | None = None) -> None:
        await self._gate("mark_stopped", owner)
        if owner in self.process_docs:
            self.process_docs[owner]["alive_until"] = datetime(1970, 1, 1, tzinfo=UTC)
            if unowned_at is not None:
                self.process_docs[owner]["unowned_at"] = unowned_at

    async def forget_process(self, owner: str) -> None:
        await self._gate("forget_process", owner)
        self.process_docs.pop(owner, None)

    async def adopt(
        self,
        owner: str,
        limit: int,
        from_owners: Sequence[str],
        only: Sequence[ObjectId] = (),
    ) -> list[AdoptedBatch]:
        await self._gate("adopt", owner, limit, tuple(from_owners))
        adopted: list[AdoptedBatch] = []
        for batch_id, pending in self.pending_docs.items():
            if len(adopted) >= limit:
                break
            if pending["owner"] not in from_owners or (only and batch_id not in only):
                continue
            pending["owner"] = owner
            unprocessed, unhashed = self._left_to_do(batch_id)
            # Like the real store: an older squad's passwords, inside the pending document,
            # are copied once to sealed_passwords for the adopter to hash.
            carried = 0
            old = [
                pair
                for pair in zip(pending["users"], pending.get("sealed", []), strict=False)
                if pair[0] in unhashed
            ]
            if old and batch_id not in self.sealed_docs:
                self.seed_sealed(old, owner, batch_id)
                self.events.append(("carry_sealed", batch_id))
                carried = len(old)
            adopted.append(AdoptedBatch(batch_id, unprocessed, carried))
        return adopted

    def _left_to_do(
        self, batch_id: ObjectId, docs: dict[ObjectId, dict[str, Any]] | None = None
    ) -> tuple[tuple[ObjectId, ...], set[ObjectId]]:
        """The batch's users not processed yet, and those not hashed yet (stored users only,
        like the real store: a user that is not stored has nothing left to do)."""
        doc = (self.pending_docs if docs is None else docs)[batch_id]
        stored = [self.user_docs[user_id] for user_id in doc["users"] if user_id in self.user_docs]
        return (
            tuple(user["_id"] for user in stored if not user.get("processed")),
            {user["_id"] for user in stored if "password_hash" not in user},
        )

    async def find_work(self, batch_id: ObjectId) -> AdoptedBatch | None:
        await self._gate("find_work", batch_id)
        if batch_id in self.pending_docs:
            unprocessed, unhashed = self._left_to_do(batch_id)
            return AdoptedBatch(batch_id, unprocessed, len(unhashed))
        if batch_id in self.sealed_docs:  # its passwords document alone records the steps
            unprocessed, unhashed = self._left_to_do(batch_id, self.sealed_docs)
            return AdoptedBatch(batch_id, unprocessed, len(unhashed), recorded_by_passwords=True)
        return None

    async def delete_everything(self, now: Any = None) -> None:
        await self._gate("delete_everything")
        self.user_docs.clear()
        self.pending_docs.clear()
        self.sealed_docs.clear()
        self.idempotency_docs.clear()


@dataclass(frozen=True)
class Operation:
    """One call the real ``Store`` made on a collection, as ``MemoryDatabase`` recorded it.

    ``method`` is txmongo's (``insert_many``, ``update_many``, ``bulk_write``...);
    ``documents`` the inserted documents; ``updates`` the ``(filter, update)`` pairs of an
    update (one, or one per operation of a ``bulk_write``); ``filter`` that of a read or a
    deletion.
    """

    collection: str
    method: str
    documents: tuple[dict[str, Any], ...] = ()
    updates: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = ()
    filter: dict[str, Any] | None = None

    @property
    def writes(self) -> bool:
        return self.method not in ("find", "command")


def _matches(document: dict[str, Any], filter: dict[str, Any]) -> bool:
    for key, condition in filter.items():
        if isinstance(condition, dict):
            for operator, operand in condition.items():
                if operator == "$in":
                    if key not in document or document[key] not in operand:
                        return False
                elif operator == "$exists":
                    if (key in document) != bool(operand):
                        return False
                else:
                    raise NotImplementedError(f"filter operator {operator}")
        elif document.get(key) != condition:
            return False
    return True


def _apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    for operator, fields in update.items():
        for key, value in fields.items():
            if operator == "$set":
                document[key] = copy.deepcopy(value)
            elif operator == "$inc":
                document[key] = document.get(key, 0) + value
            else:
                raise NotImplementedError(f"update operator {operator}")


class MemoryCollection:
    """One collection of ``MemoryDatabase``: the few txmongo methods ``Store`` calls, with
    MongoDB's semantics for the shapes it sends (``_id`` keys, ``$in``, ``$set``, upsert)."""

    def __init__(self, database: MemoryDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.write_concern = WriteConcern()
        self.documents: dict[Any, dict[str, Any]] = {}

    async def _record(self, operation: Operation) -> None:
        await self.database.record(operation)

    async def insert_one(self, document: dict[str, Any], **options: Any) -> None:
        await self._record(Operation(self.name, "insert_one", (copy.deepcopy(document),)))
        if document["_id"] in self.documents:
            raise DuplicateKeyError(f"E11000 duplicate key: {document['_id']}", DUPLICATE_KEY)
        self.documents[document["_id"]] = copy.deepcopy(document)

    async def insert_many(
        self, documents: list[dict[str, Any]], ordered: bool = True, **options: Any
    ) -> None:
        errors = await self.insert(documents, ordered, method="insert_many")
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    async def insert(
        self, documents: list[dict[str, Any]], ordered: bool, method: str = "insert"
    ) -> list[dict[str, Any]]:
        """Insert as MongoDB's ``insert`` command does; its write errors."""
        await self._record(Operation(self.name, method, tuple(copy.deepcopy(d) for d in documents)))
        errors: list[dict[str, Any]] = []
        for index, document in enumerate(documents):
            if document["_id"] in self.documents:
                errors.append({"index": index, "code": DUPLICATE_KEY, "errmsg": "E11000 dup"})
                if ordered:
                    break
                continue
            self.documents[document["_id"]] = copy.deepcopy(document)
        return errors

    async def find(
        self,
        filter: dict[str, Any] | None = None,
        projection: dict[str, Any] | None = None,
        limit: int = 0,
        **options: Any,
    ) -> list[dict[str, Any]]:
        await self._record(Operation(self.name, "find", filter=copy.deepcopy(filter or {})))
        found = [d for d in self.documents.values() if _matches(d, filter or {})]
        if limit:
            found = found[: abs(limit)]
        if projection:
            kept = {"_id", *projection}
            found = [{k: v for k, v in d.items() if k in kept} for d in found]
        return copy.deepcopy(found)

    def _update(
        self, filter: dict[str, Any], update: dict[str, Any], many: bool, upsert: bool
    ) -> None:
        matched = [d for d in self.documents.values() if _matches(d, filter)]
        for document in matched if many else matched[:1]:
            _apply(document, update)
        if not matched and upsert:
            document = {"_id": filter["_id"]}
            _apply(document, update)
            self.documents[document["_id"]] = document

    async def update_one(
        self, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False, **options: Any
    ) -> None:
        await self._record(
            Operation(self.name, "update_one", updates=((copy.deepcopy(filter), update),))
        )
        self._update(filter, update, many=False, upsert=upsert)

    async def update_many(
        self, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False, **options: Any
    ) -> None:
        await self._record(
            Operation(self.name, "update_many", updates=((copy.deepcopy(filter), update),))
        )
        self._update(filter, update, many=True, upsert=upsert)

    async def bulk_write(self, requests: list[Any], **options: Any) -> None:
        # pymongo's UpdateOne keeps its parts in these attributes; txmongo reads them too.
        pairs = tuple((dict(r._filter), dict(r._doc)) for r in requests)
        await self._record(Operation(self.name, "bulk_write", updates=copy.deepcopy(pairs)))
        for request in requests:
            if type(request).__name__ != "UpdateOne":
                raise NotImplementedError(type(request).__name__)
            self._update(request._filter, request._doc, many=False, upsert=request._upsert)

    async def delete_one(self, filter: dict[str, Any], **options: Any) -> None:
        await self._record(Operation(self.name, "delete_one", filter=copy.deepcopy(filter)))
        for key in [k for k, d in self.documents.items() if _matches(d, filter)][:1]:
            del self.documents[key]

    async def delete_many(self, filter: dict[str, Any], **options: Any) -> None:
        await self._record(Operation(self.name, "delete_many", filter=copy.deepcopy(filter)))
        for key in [k for k, d in self.documents.items() if _matches(d, filter)]:
            del self.documents[key]

    async def drop(self, **options: Any) -> None:
        await self._record(Operation(self.name, "drop"))
        self.documents.clear()


class MemoryDatabase:
    """A stand-in for txmongo's ``Database`` that the real ``Store`` can use: collections in
    memory, and ``operations``, every call the store made in order, so a test pins what is
    written, how often, in which order and in which shape. ``hold`` makes calls wait until the
    test releases them (to see what is sent together)."""

    def __init__(self, *, ferretdb: bool = True) -> None:
        self._collections: dict[str, MemoryCollection] = {}
        self._ferretdb = ferretdb
        self.operations: list[Operation] = []
        self._holding: set[tuple[str, str]] = set()
        self._failing: set[tuple[str, str]] = set()
        #: The calls waiting, with the Deferred that lets each go on.
        self.held: list[tuple[Operation, Deferred[None]]] = []

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self._collections:
            self._collections[name] = MemoryCollection(self, name)
        return self._collections[name]

    def hold(self, collection: str, method: str) -> None:
        self._holding.add((collection, method))

    def fail(self, collection: str, method: str) -> None:
        """The next call of ``method`` on ``collection`` fails as if the database went away."""
        self._failing.add((collection, method))

    def release(self) -> None:
        """Stop holding and let every waiting call go on."""
        self._holding.clear()
        held, self.held = self.held, []
        for _, waiting in held:
            if not waiting.called:
                waiting.callback(None)

    async def record(self, operation: Operation) -> None:
        self.operations.append(operation)
        if (operation.collection, operation.method) in self._failing:
            self._failing.discard((operation.collection, operation.method))
            raise AutoReconnect("the memory database went away")
        if (operation.collection, operation.method) in self._holding:
            waiting: Deferred[None] = Deferred()
            self.held.append((operation, waiting))
            await waiting

    async def command(self, name: str | dict[str, Any], **options: Any) -> dict[str, Any]:
        if isinstance(name, dict) and "insert" in name:
            errors = await self[name["insert"]].insert(name["documents"], name["ordered"])
            return {"ok": 1, "n": len(name["documents"]) - len(errors)} | (
                {"writeErrors": errors} if errors else {}
            )
        self.operations.append(Operation("", "command", filter={"command": name}))
        if name == "buildInfo":
            return {"ferretdbVersion": "v1.24.2"} if self._ferretdb else {"version": "7.0.0"}
        return {"ok": 1}

    def writes(self) -> list[Operation]:
        return [operation for operation in self.operations if operation.writes]

    def documents(self, collection: str) -> dict[Any, dict[str, Any]]:
        return self[collection].documents


_FAST_SCALARS = (bool, str, int, float, datetime, ObjectId)


def _by_id(filter: dict[str, Any]) -> bool:
    if set(filter) != {"_id"}:
        return False
    condition = filter["_id"]
    if isinstance(condition, dict):
        return set(condition) == {"$in"} and isinstance(condition["$in"], list)
    return True


def is_fast_update(filter: dict[str, Any], update: dict[str, Any]) -> bool:
    """Whether an update has the shape squad's FerretDB build applies in one SQL statement:
    a filter of exactly ``_id`` (a value, or ``$in`` a list), and exactly one ``$set`` of
    top-level fields (no dots, no ``$``, not ``_id``) with scalar values."""
    if not _by_id(filter) or set(update) != {"$set"}:
        return False
    return all(
        "." not in key
        and not key.startswith("$")
        and key != "_id"
        and isinstance(value, _FAST_SCALARS)
        for key, value in update["$set"].items()
    )


def is_fast_delete(filter: dict[str, Any]) -> bool:
    """Whether a deletion is by ``_id`` alone (a value, or ``$in`` a list)."""
    return _by_id(filter)


class ManualVerification:
    """A slow step that waits on a Deferred per call, which the test fires (or never fires)."""

    def __init__(self) -> None:
        self.calls: list[ObjectId] = []
        self.waiting: list[Deferred[None]] = []
        #: Called at the start of every ``verify``, to look at the world at that moment.
        self.on_call: Callable[[ObjectId], None] = lambda user_id: None

    async def verify(self, user_id: ObjectId) -> None:
        self.on_call(user_id)
        self.calls.append(user_id)
        waiting: Deferred[None] = Deferred()
        self.waiting.append(waiting)
        await waiting

    def succeed(self, index: int = -1) -> None:
        self.waiting[index].callback(None)

    def fail(self, error: Exception, index: int = -1) -> None:
        self.waiting[index].errback(Failure(error))


def quick_hasher(
    clock: Clock,
    store: FakeStore,
    writer: FinishWriter,
    *,
    sealer: PasswordSealer | None = None,
    owner: str = OWNER,
    busy: Callable[[], bool] = lambda: False,
    heavy: Callable[[], bool] = lambda: False,
    hash_off_thread: Callable[[str], Deferred[str]] = lambda password: succeed("hash"),
) -> PasswordHasher:
    """A real ``PasswordHasher`` on ``clock`` and the fake store (not started) whose hashing is
    ``hash_off_thread``, answering at once: no argon2, no thread."""
    return PasswordHasher(
        clock,
        sealer or PasswordSealer(bytes(range(32))),
        store,
        writer,
        owner,
        busy=busy,
        heavy=heavy,
        hash_off_thread=hash_off_thread,
    )


class Squad:
    """The HTTP app of one process on fakes: ``FakeStore``, ``ManualVerification``, ``Clock``.

    ``requests`` holds every request the site made, to see when an answer finished.
    """

    def __init__(
        self,
        *,
        allow_flush: bool = False,
        write_deadline: float = 2.0,
        max_waiting: int = 4096,
        capacity: int = 30_000,
        commit_concurrency: int = 4,
        store: FakeStore | None = None,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = store or FakeStore()
        self.verification = ManualVerification()
        self.writer = FinishWriter(self.clock, self.store)
        self.slow_work = SlowWork(
            self.clock,
            self.store,
            self.verification,
            self.writer,
            OWNER,
            capacity=capacity,
            backoff=Backoff(base=1.0, cap=10.0),
        )
        self.slow_work.startService()
        self.sealer = PasswordSealer(bytes(range(32)))
        # Not started: it only queues what it is handed, unless a test starts it.
        self.hasher = quick_hasher(
            self.clock,
            self.store,
            self.writer,
            sealer=self.sealer,
            hash_off_thread=lambda password: succeed(f"hash of {len(password)} characters"),
        )
        self.commit: GroupCommit[PendingSignup] = GroupCommit(
            self.clock,
            recording_work(
                partial(self.store.insert_signups, hasher=OWNER), self.slow_work, self.hasher
            ),
            concurrency=commit_concurrency,
        )
        self.shed = 0
        self.api = SquadAPI(
            self.clock,
            self.store,
            self.commit,
            self.slow_work,
            self.sealer,
            allow_flush=allow_flush,
            write_deadline=write_deadline,
            max_waiting=max_waiting,
            idempotency_secret=b"idempotency secret for tests",
            on_shed=self._count_shed,
            on_flush=self.hasher.drop_all,
        )
        self.requests: list[LimitedRequest] = []
        requests = self.requests

        class RecordingRequest(LimitedRequest):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                requests.append(self)

        reactor = MemoryReactorClock()
        site = SquadSite(self.api.app.resource(), reactor=reactor)
        site.requestFactory = RecordingRequest
        self.http = InMemorySite(site, reactor)

    def _count_shed(self) -> None:
        self.shed += 1

    def post_users(
        self,
        body: bytes | dict[str, Any],
        content_type: bytes | None = b"application/json",
        headers: dict[bytes, list[bytes]] | None = None,
    ) -> Deferred[Any]:
        """POST /users with exactly these bytes (a dict is sent as JSON)."""
        data = json.dumps(body).encode("utf-8") if isinstance(body, dict) else body
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers[b"Content-Type"] = [content_type]
        result: Deferred[Any] = self.http.post(
            "http://squad.test/users", data=data, headers=all_headers
        )
        return result

    def request(self, method: str, path: str) -> Deferred[Any]:
        result: Deferred[Any] = self.http.request(method, "http://squad.test" + path)
        return result

    def settle(self) -> None:
        """Run what is due now (the group commit flushes on the next reactor turn) and move
        the bytes between client and server."""
        for _ in range(3):
            self.clock.advance(0)
            self.http.flush()


def error_body(content: bytes) -> dict[str, Any]:
    """Parse a JSON error body, checking the contract's shape."""
    document = json.loads(content)
    assert isinstance(document, dict), document
    assert isinstance(document.get("error"), str) and document["error"], document
    assert isinstance(document.get("message"), str) and document["message"], document
    return document
