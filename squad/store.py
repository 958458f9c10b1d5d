"""Everything squad reads from and writes to MongoDB, through txmongo.

Collections (one database, `squad` by default):

- ``users``: the sign-ups, as the contract describes them.
- ``slow_steps``: one small document per user whose slow step has not finished, naming the
  process that owns it. The database is the queue: work survives the process that accepted it.
- ``password_hashing``: one document per user whose password is still sealed (encrypted with a
  key that is not in the database) and waiting for the background hasher.
- ``processes``: a heartbeat per running squad process. A process whose heartbeat is older than
  the lease is dead; its work goes back to the pool (owner ``""``) for others to adopt.
- ``idempotency_keys``: the first answer to each ``Idempotency-Key``.

The pending collections stay small (they shrink as work finishes) because FerretDB filters
anything but equality in memory after reading every document: we only ever query them by
equality (``owner``, ``_id``) and never scan ``users``.

Every call passes a timeout: txmongo has none by default and would wait forever on a dead
database (txmongo issue 237).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError
from twisted.internet.defer import Deferred, ensureDeferred
from txmongo.collection import Collection
from txmongo.database import Database
from txmongo.filter import ASCENDING, sort

__all__ = ["AdoptedPassword", "PendingSignup", "Store"]

# Released work and overflow work nobody holds in memory yet: any process may adopt it.
UNOWNED = ""

USERS = "users"
SLOW_STEPS = "slow_steps"
PASSWORD_HASHING = "password_hashing"  # noqa: S105 - a collection name
PROCESSES = "processes"
IDEMPOTENCY_KEYS = "idempotency_keys"


@dataclass
class PendingSignup:
    """One sign-up on its way to the database, with the work that must follow it."""

    user: dict[str, Any]
    sealed_password: bytes
    slow_owner: str
    hash_owner: str
    #: Set by the group commit when this item's documents could not all be written.
    error: BaseException | None = field(default=None, repr=False)

    @property
    def user_id(self) -> ObjectId:
        user_id = self.user["_id"]
        assert isinstance(user_id, ObjectId)
        return user_id


@dataclass(frozen=True)
class AdoptedPassword:
    user_id: ObjectId
    sealed_password: bytes = field(repr=False)


def _failed_indexes(error: BulkWriteError) -> dict[int, str]:
    return {
        int(entry["index"]): str(entry.get("errmsg", "write error"))
        for entry in error.details.get("writeErrors", [])
    }


class WriteRefused(Exception):
    """The database refused this one document (the others in its batch may have been written)."""


class Store:
    """Squad's data access. Every method takes at most ``timeout`` seconds or fails."""

    def __init__(self, timeout: float, database: Database | None = None) -> None:
        self.timeout = timeout
        if database is not None:
            self.attach(database)

    def attach(self, database: Database) -> None:
        """Use ``database`` (the pool is opened when the service starts, after any fork)."""
        self.database = database
        self.users: Collection = database[USERS]
        self.slow_steps: Collection = database[SLOW_STEPS]
        self.password_hashing: Collection = database[PASSWORD_HASHING]
        self.processes: Collection = database[PROCESSES]
        self.idempotency_keys: Collection = database[IDEMPOTENCY_KEYS]

    async def ensure_indexes(self) -> None:
        """Indexes for the equality lookups of the work queues (both MongoDB and FerretDB)."""
        for collection in (self.slow_steps, self.password_hashing):
            await collection.create_index(sort(ASCENDING("owner")))

    async def ping(self) -> None:
        await self.database.command("ping", timeout=self.timeout)

    # -- sign-ups ---------------------------------------------------------------------------

    async def insert_signups(self, batch: list[PendingSignup]) -> None:
        """Write a batch of sign-ups in three bulk writes, marking each item that failed.

        The work documents go first: a user is only ever visible with its pending work already
        recorded, so an acknowledged user can never be left without its slow step. Work for a
        user whose own insert then fails is harmless: finishing it updates nothing.
        Raises only when the whole batch failed (timeout, lost connection).
        """
        work = [item for item in batch if item.error is None]
        passwords = [
            {"_id": item.user_id, "owner": item.hash_owner, "sealed": item.sealed_password}
            for item in work
        ]
        slow = [{"_id": item.user_id, "owner": item.slow_owner, "attempts": 0} for item in work]
        # Two independent collections: write them concurrently on two pool connections.
        first = self._insert_marking(self.password_hashing, passwords, work)
        second = self._insert_marking(self.slow_steps, slow, work)
        await first
        await second
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
        found: dict[str, Any] | None = await self.users.find_one(
            {"_id": user_id}, timeout=self.timeout
        )
        return found

    async def insert_user(self, item: PendingSignup) -> None:
        """Write one sign-up (used to complete an idempotent retry whose first try failed)."""
        await self.insert_signups([item])
        if item.error is not None:
            raise item.error

    # -- the slow step ----------------------------------------------------------------------

    async def mark_processed(self, user_id: ObjectId, now: datetime) -> None:
        """The slow step's idempotent finish: running it twice leaves the same user."""
        await self.users.update_one(
            {"_id": user_id},
            {"$set": {"processed": True, "date_updated": now}},
            timeout=self.timeout,
        )
        await self.slow_steps.delete_one({"_id": user_id}, timeout=self.timeout)

    async def record_slow_failure(
        self, user_id: ObjectId, attempts: int, reason: str, now: datetime
    ) -> None:
        """Make a failing verification visible in the user document while it is retried."""
        await self.users.update_one(
            {"_id": user_id},
            {
                "$set": {
                    "verification": {
                        "state": "retrying",
                        "attempts": attempts,
                        "last_error": reason,
                        "last_attempt": now,
                    }
                }
            },
            timeout=self.timeout,
        )

    # -- the password hasher ----------------------------------------------------------------

    async def store_password_hash(self, user_id: ObjectId, password_hash: str) -> None:
        """Replace the sealed password by its hash: first set the hash, then drop the seal."""
        await self.users.update_one(
            {"_id": user_id}, {"$set": {"password_hash": password_hash}}, timeout=self.timeout
        )
        await self.password_hashing.delete_one({"_id": user_id}, timeout=self.timeout)

    # -- ownership of pending work ----------------------------------------------------------

    async def heartbeat(self, owner: str, alive_until: datetime, about: dict[str, Any]) -> None:
        await self.processes.update_one(
            {"_id": owner},
            {"$set": {"alive_until": alive_until, **about}},
            upsert=True,
            timeout=self.timeout,
        )

    async def dead_owners(self, now: datetime) -> list[str]:
        """Processes whose heartbeat lapsed (a small collection: one document per process)."""
        found = await self.processes.find({}, timeout=self.timeout)
        return [
            str(process["_id"])
            for process in found
            if _as_naive(process["alive_until"]) < _as_naive(now)
        ]

    async def release(self, owner: str) -> None:
        """Hand every pending item of ``owner`` back to the pool, then forget the process."""
        for collection in (self.slow_steps, self.password_hashing):
            await collection.update_many(
                {"owner": owner}, {"$set": {"owner": UNOWNED}}, timeout=self.timeout
            )
        await self.processes.delete_one({"_id": owner}, timeout=self.timeout)

    async def adopt_slow_steps(self, owner: str, limit: int) -> list[ObjectId]:
        """Take up to ``limit`` unowned slow steps.

        On FerretDB two processes may adopt the same item (its updates are not atomic, FerretDB
        issue 3040); the slow step's finish is idempotent, so that costs a repeat, never a loss.
        """
        return [doc["_id"] for doc in await self._adopt(self.slow_steps, owner, limit, {"_id": 1})]

    async def adopt_passwords(self, owner: str, limit: int) -> list[AdoptedPassword]:
        return [
            AdoptedPassword(doc["_id"], bytes(doc["sealed"]))
            for doc in await self._adopt(self.password_hashing, owner, limit, None)
        ]

    async def _adopt(
        self,
        collection: Collection,
        owner: str,
        limit: int,
        projection: dict[str, int] | None,
    ) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        candidates = await collection.find(
            {"owner": UNOWNED}, projection, limit=limit, timeout=self.timeout
        )
        adopted = []
        for doc in candidates:
            result = await collection.update_one(
                {"_id": doc["_id"], "owner": UNOWNED},
                {"$set": {"owner": owner}},
                timeout=self.timeout,
            )
            if result.modified_count:
                adopted.append(doc)
        return adopted

    # -- flush ------------------------------------------------------------------------------

    async def delete_everything(self) -> None:
        """``DELETE /collections``: every user and all pending work."""
        for collection in (
            self.users,
            self.slow_steps,
            self.password_hashing,
            self.idempotency_keys,
        ):
            await collection.delete_many({}, timeout=self.timeout)


def _as_naive(moment: datetime) -> datetime:
    # txmongo hands back naive UTC datetimes by default; compare like with like.
    return moment.replace(tzinfo=None)
