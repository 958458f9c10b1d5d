"""Everything squad reads from and writes to MongoDB, through txmongo.

Collections (one database, ``squad`` by default):

- ``users``: the sign-ups, as the contract describes them.
- ``pending``: one small document per user whose background work (the slow step, the password
  hash) is not finished: its owner process and the sealed password. The database is the queue:
  the work survives the process that accepted it. The collection shrinks as work finishes.
- ``processes``: a heartbeat per running squad process. A process whose heartbeat is older than
  the lease is dead; live processes adopt its work straight from it, then forget it. Work no
  process could hold in memory is stored unowned (owner ``""``) and adopted the same way.
- ``idempotency_keys``: the first answer to each ``Idempotency-Key``.

Only ``_id`` lookups are cheap on FerretDB (its SQLite backend pushes nothing else down to SQL),
so the hot paths only ever touch documents by ``_id``; the rare ownership sweeps filter the
small ``pending`` collection. Every call passes a timeout: txmongo has none by default and
would wait forever on a dead database (txmongo issue 237).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import DeleteOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from txmongo.collection import Collection
from txmongo.database import Database

__all__ = ["UNOWNED", "AdoptedWork", "PendingSignup", "Store", "WriteRefused"]

# Released work and overflow work nobody holds in memory yet: any process may adopt it.
UNOWNED = ""

USERS = "users"
PENDING = "pending"
PROCESSES = "processes"
IDEMPOTENCY_KEYS = "idempotency_keys"
# A document in ``processes`` (never a dead owner: it lives forever) counting flushes.
FLUSH_MARK = "flush"
_FOREVER = datetime(9999, 1, 1)
_EPOCH = datetime(1970, 1, 1)

# FerretDB v1.24 keeps one SQL connection open per update of an update message until the whole
# message is done, from a pool of 100 (a `defer` inside its loop, msg_update.go). A message of
# 100 or more updates deadlocks its SQLite backend for every client. So bulk writes go in
# messages of a few operations: the round trips are still shared, the pool never runs dry.
BULK_OPERATIONS_PER_MESSAGE = 16


@dataclass
class PendingSignup:
    """One sign-up on its way to the database, with the work that must follow it."""

    user: dict[str, Any]
    sealed_password: bytes = field(repr=False)
    owner: str
    #: Set by the group commit when this item's documents could not all be written.
    error: BaseException | None = field(default=None, repr=False)

    @property
    def user_id(self) -> ObjectId:
        user_id = self.user["_id"]
        assert isinstance(user_id, ObjectId)
        return user_id


@dataclass(frozen=True)
class AdoptedWork:
    """Pending work taken from the pool, with what is already done (a take-over may be late)."""

    user_id: ObjectId
    sealed_password: bytes | None = field(repr=False)
    processed: bool
    hashed: bool


class WriteRefused(Exception):
    """The database refused this one document (the others in its batch may have been written)."""


def _failed_indexes(error: BulkWriteError) -> dict[int, str]:
    return {
        int(entry["index"]): str(entry.get("errmsg", "write error"))
        for entry in error.details.get("writeErrors", [])
    }


class Store:
    """Squad's data access. Every method takes at most ``timeout`` seconds or fails."""

    def __init__(self, timeout: float, database: Database | None = None) -> None:
        self.timeout = timeout
        self._server_is_mongodb: bool | None = None
        if database is not None:
            self.attach(database)

    def attach(self, database: Database, background: Database | None = None) -> None:
        """Use ``database``; background writes go through ``background`` (its own connection),
        so they queue behind each other instead of delaying sign-ups."""
        self.database = database
        self.users: Collection = database[USERS]
        self.pending: Collection = database[PENDING]
        self.processes: Collection = database[PROCESSES]
        self.idempotency_keys: Collection = database[IDEMPOTENCY_KEYS]
        quiet = background if background is not None else database
        self.background_users: Collection = quiet[USERS]
        self.background_pending: Collection = quiet[PENDING]

    async def ping(self) -> None:
        await self.database.command("ping", timeout=self.timeout)

    # -- sign-ups ---------------------------------------------------------------------------

    async def insert_signups(self, batch: list[PendingSignup]) -> None:
        """Write a batch of sign-ups in two bulk writes, marking each item that failed.

        The work document goes first: a user is only ever visible with its pending work already
        recorded, so an acknowledged user can never be left without its slow step. Work for a
        user whose own insert then fails is harmless: finishing it updates nothing.
        Raises only when the whole batch failed (timeout, lost connection).
        """
        work = [item for item in batch if item.error is None]
        await self._insert_marking(
            self.pending,
            [
                {"_id": item.user_id, "owner": item.owner, "sealed": item.sealed_password}
                for item in work
            ],
            work,
        )
        work = [item for item in work if item.error is None]
        await self._insert_marking(self.users, [item.user for item in work], work)

    def _insert_marking(
        self, collection: Collection, documents: list[dict[str, Any]], items: list[PendingSignup]
    ) -> Deferred[None]:
        async def insert() -> None:
            if not documents:
                return
            try:
                await collection.insert_many(documents, ordered=False, timeout=self.timeout)
            except BulkWriteError as error:
                for index, message in _failed_indexes(error).items():
                    items[index].error = WriteRefused(message)

        return ensureDeferred(insert())

    async def find_user(self, user_id: ObjectId) -> dict[str, Any] | None:
        # Not find_one(): it sends limit 1 and relies on the server to close the cursor, which
        # FerretDB does not do; each leaked cursor holds one of its SQL connections for ten
        # minutes. A negative limit asks for a single batch and no cursor at all.
        found = await self.users.find({"_id": user_id}, limit=-1, timeout=self.timeout)
        return found[0] if found else None

    # -- idempotency keys -------------------------------------------------------------------

    async def find_idempotency_record(self, key: str) -> dict[str, Any] | None:
        found = await self.idempotency_keys.find({"_id": key}, limit=-1, timeout=self.timeout)
        return found[0] if found else None

    async def insert_idempotency_record(self, record: dict[str, Any]) -> bool:
        """Record a first answer; False when another request recorded this key first."""
        try:
            await self.idempotency_keys.insert_one(record, timeout=self.timeout)
        except DuplicateKeyError:
            return False
        return True

    async def replace_idempotency_record(self, record: dict[str, Any]) -> None:
        """Reuse a key whose 24 hours are over."""
        await self.idempotency_keys.delete_one({"_id": record["_id"]}, timeout=self.timeout)
        await self.idempotency_keys.insert_one(record, timeout=self.timeout)

    # -- finishing background work ----------------------------------------------------------

    async def apply_finishes(
        self, updates: dict[ObjectId, dict[str, Any]], finished: list[ObjectId]
    ) -> None:
        """Apply users' finished work in two bulk writes on the background connection.

        ``updates`` sets fields (``processed``/``date_updated``, ``password_hash``) per user;
        ``finished`` lists users whose pending document can go: called only after their last
        update was acknowledged, so a crash in between repeats work but never loses it.
        """
        operations = [
            UpdateOne({"_id": user_id}, {"$set": fields}) for user_id, fields in updates.items()
        ]
        deletions = [DeleteOne({"_id": user_id}) for user_id in finished]
        for collection, requests in (
            (self.background_users, operations),
            (self.background_pending, deletions),
        ):
            for start in range(0, len(requests), BULK_OPERATIONS_PER_MESSAGE):
                await collection.bulk_write(
                    requests[start : start + BULK_OPERATIONS_PER_MESSAGE],
                    ordered=False,
                    timeout=self.timeout * 4,
                )

    # -- ownership of pending work ----------------------------------------------------------

    async def heartbeat(self, owner: str, alive_until: datetime, about: dict[str, Any]) -> None:
        await self.processes.update_one(
            {"_id": owner},
            {"$set": {"alive_until": alive_until, **about}},
            upsert=True,
            timeout=self.timeout,
        )

    async def lease_view(self, now: datetime) -> tuple[list[str], datetime | None]:
        """In one read of the small ``processes`` collection: the processes whose heartbeat
        lapsed, and the latest time any process said it stored unowned work (None if none
        did), so that the expensive look for unowned work happens only when there may be some.
        """
        found = await self.processes.find({}, timeout=self.timeout)
        dead: list[str] = []
        latest: datetime | None = None
        for process in found:
            if process["_id"] == FLUSH_MARK:
                continue
            if _as_naive(process["alive_until"]) < _as_naive(now):
                dead.append(str(process["_id"]))
            mark = process.get("unowned_at")
            if mark is not None and (latest is None or _as_naive(mark) > latest):
                latest = _as_naive(mark)
        return dead, latest

    async def mark_stopped(self, owner: str, unowned_at: datetime | None = None) -> None:
        """Hand this stopping process's work over in one write: its heartbeat lapses now, so the
        next lease round of any live process takes the work over (no update per document).
        ``unowned_at``: when this process last stored unowned work, if it did."""
        fields: dict[str, Any] = {"alive_until": _EPOCH}
        if unowned_at is not None:
            fields["unowned_at"] = unowned_at
        await self.processes.update_one({"_id": owner}, {"$set": fields}, timeout=self.timeout)

    async def forget_process(self, owner: str) -> None:
        """Delete a dead process's heartbeat once none of its work is left to take over."""
        await self.processes.delete_one({"_id": owner}, timeout=self.timeout)

    async def adopt(self, owner: str, limit: int, from_owners: Sequence[str]) -> list[AdoptedWork]:
        """Take up to ``limit`` items owned by ``from_owners`` (dead processes, or the pool
        ``UNOWNED``), and learn what of each is already done (a take-over may be late).

        Claimed straight from the dead owner: handing work back to the pool first meant an
        update of every one of its documents in one statement, which on FerretDB (every write
        a document at a time) ran for seconds into its timeout with a large take-over.
        On FerretDB two processes may adopt the same item (its updates are not atomic, FerretDB
        issue 3040); finishing is idempotent, so that costs a repeat, never a loss.
        """
        if limit <= 0 or not from_owners:
            return []
        candidates = await self.pending.find(
            {"owner": {"$in": list(from_owners)}}, limit=-limit, timeout=self.timeout * 4
        )
        if not candidates:
            return []
        # Claimed in bulk. On MongoDB each claim holds only if the item is still owned by whom
        # we found it with, so two processes never both take it. On FerretDB that condition
        # turns the update into a scan of `pending` (86 ms a claim instead of 5 ms, measured:
        # 100 claims overran the timeout, and a take-over never finished), and its updates are
        # not atomic anyway: there the claim is by _id alone and a race costs a repeat.
        exclusive = await self._filters_beyond_id_are_cheap()
        claims = [
            UpdateOne(
                {"_id": doc["_id"], "owner": doc["owner"]} if exclusive else {"_id": doc["_id"]},
                {"$set": {"owner": owner}},
            )
            for doc in candidates
        ]
        for start in range(0, len(claims), BULK_OPERATIONS_PER_MESSAGE):
            await self.pending.bulk_write(
                claims[start : start + BULK_OPERATIONS_PER_MESSAGE],
                ordered=False,
                timeout=self.timeout * 4,
            )
        # One lookup by _id per user, side by side: on FerretDB `{"_id": {"$in": ids}}` reads
        # the whole users collection (3.7 s for 100 ids among 30,000 users, measured), a
        # lookup by _id uses the index (about 1 ms).
        found = await gatherResults(
            [
                self.users.find(
                    {"_id": doc["_id"]},
                    {"processed": 1, "password_hash": 1},
                    limit=-1,
                    timeout=self.timeout * 4,
                )
                for doc in candidates
            ],
            consumeErrors=True,
        )
        adopted = []
        for doc, users in zip(candidates, found, strict=True):
            user = users[0] if users else None
            sealed = doc.get("sealed")
            adopted.append(
                AdoptedWork(
                    user_id=doc["_id"],
                    sealed_password=bytes(sealed) if sealed is not None else None,
                    processed=bool(user and user.get("processed")),
                    # A user whose insert failed after its work was written: nothing to hash.
                    hashed=user is None or "password_hash" in user,
                )
            )
        return adopted

    async def _filters_beyond_id_are_cheap(self) -> bool:
        """False on FerretDB (its SQL sees only _id filters), True on MongoDB; asked once."""
        if self._server_is_mongodb is None:
            info = await self.database.command("buildInfo", timeout=self.timeout)
            self._server_is_mongodb = "ferretdbVersion" not in info
        return self._server_is_mongodb

    # -- flush ------------------------------------------------------------------------------

    async def delete_everything(self, now: datetime | None = None) -> None:
        """``DELETE /collections``: every user and all pending work.

        Dropped, not emptied: FerretDB deletes document by document (minutes for the hundred
        thousand users a benchmark sweep leaves), a drop is one statement on any server.
        """
        for collection in (self.users, self.pending, self.idempotency_keys):
            await collection.drop(timeout=self.timeout * 10)
        # Tell the other processes, which hold work for the users just deleted in memory.
        await self.processes.update_one(
            {"_id": FLUSH_MARK},
            {"$inc": {"generation": 1}, "$set": {"alive_until": _FOREVER, "at": now or _EPOCH}},
            upsert=True,
            timeout=self.timeout,
        )

    async def last_flush(self) -> tuple[int, datetime]:
        """How many times DELETE /collections ran on this database, and when it last did."""
        found = await self.processes.find({"_id": FLUSH_MARK}, limit=-1, timeout=self.timeout)
        if not found:
            return 0, _EPOCH
        return int(found[0].get("generation", 0)), found[0].get("at", _EPOCH)


def _as_naive(moment: datetime) -> datetime:
    # txmongo hands back naive UTC datetimes by default; compare like with like.
    return moment.replace(tzinfo=None)
