"""Everything squad reads from and writes to MongoDB, through txmongo.

Collections (one database, ``squad`` by default):

- ``users``: the sign-ups (never a password; its hash once it is made). Besides the contract's
  fields a user may carry, all top-level scalars: ``password_hash``; and, only when its slow
  step did not succeed at the first try here, ``verification_state`` (``"retrying"``, then
  ``"verified"``), ``verification_attempts``, ``verification_error`` and
  ``verification_attempted_at``.
- ``sealed_passwords``: the work of each group-commit batch, one document per batch: the
  process that owns it, the ids of its users and each one's sealed password. The database is
  the queue: the work survives the process that accepted it. It is the one document a batch
  writes before its users, and for a batch whose slow steps run in the process that accepted
  it (every batch but overflow) it is also the record of those steps: it goes once its
  passwords are hashed and its users ``processed``. Never copied. Drained at the CPU's pace, it
  may grow under load, and nothing periodic reads it (a process reads a batch by ``_id`` when
  it hashes it; a full read happens only when a process died and its batches are taken over).
- ``pending``: slow steps recorded apart from their passwords, one small document per batch
  (its owner and the ids of the users still to process), under the same ``_id`` as the
  batch's ``sealed_passwords`` document: a batch of overflow (owner ``""``, for any process to
  adopt), the steps still to run of the batches of a process stopped gracefully (written by
  it before it hands its work over), and those of a killed process, written by the process
  that takes its passwords over before it claims them. The document goes once
  every one of its users is ``processed``, so the collection holds only the last slow-step
  period's batches, however long the load, and the looks for work to adopt read only it.
- ``processes``: a heartbeat per running squad process. A process whose heartbeat is older than
  the lease is dead; live processes adopt its work straight from it, then forget it. Work no
  process could hold in memory is stored unowned (owner ``""``) and adopted the same way.
- ``idempotency_keys``: the first answer to each ``Idempotency-Key``.

Each fact is written once: a user's insert, its ``processed`` update, its hash (one update with
the ``processed`` one when both are ready in the same round), and a batch's work document,
inserted once and deleted once, several batches per deletion. Every update of a user is a
``$set`` of top-level scalars by ``_id`` (equality, or ``$in``), and every deletion is by
``_id``: the shapes squad's FerretDB build applies in one SQL statement without decoding a
document (docs/database.md).

Older squads wrote both documents for every batch, and before them kept the sealed passwords
inside the ``pending`` document. Work of either shape, left by a process of that version, is
still finished: a ``pending`` document is adopted as it is (a take-over's record of the same
steps is then a duplicate and not written), and adopting one that holds passwords copies those
not hashed yet to ``sealed_passwords``, once, for the adopting process to hash.

Only ``_id`` lookups (equality, and ``$in`` with squad's FerretDB patch) are cheap on FerretDB:
its SQLite backend pushes nothing else down to SQL. So the hot paths only ever touch documents by
``_id``, and the ownership sweeps filter only the small ``pending`` and ``processes``. Every
call passes a timeout: txmongo has none by default and would wait forever on a dead database
(https://github.com/twisted/txmongo/issues/237).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteConcernError
from twisted.internet.defer import Deferred, FirstError, ensureDeferred, gatherResults
from twisted.python.failure import Failure
from txmongo.collection import Collection
from txmongo.database import Database
from zope.interface import Attribute, Interface, implementer

from squad.storage.documents import verified_fields

__all__ = [
    "UNOWNED",
    "AdoptedBatch",
    "ClaimInterrupted",
    "FinishRound",
    "IStore",
    "LeaseView",
    "Passwords",
    "PendingSignup",
    "SealedBatch",
    "Store",
    "WorkBatch",
    "WriteRefused",
    "insert_unordered",
]

# Released work and overflow work nobody holds in memory yet: any process may adopt it.
UNOWNED = ""

USERS = "users"
PENDING = "pending"
SEALED_PASSWORDS = "sealed_passwords"
PROCESSES = "processes"
IDEMPOTENCY_KEYS = "idempotency_keys"
# A document in ``processes`` (never a dead owner: it lives forever) counting flushes.
FLUSH_MARK = "flush"
_FOREVER = datetime(9999, 1, 1)
_EPOCH = datetime(1970, 1, 1)

# Operations per bulk message: one round trip each, and few enough that a message does not hold
# the database's writer for long. Unpatched FerretDB deadlocks on large messages; squad's build
# does not (docs/database.md, section 6).
BULK_OPERATIONS_PER_MESSAGE = 100
# Ids per `_id: {$in: ...}` filter: one SQL statement each on FerretDB, well under SQLite's limit
# of bound parameters.
IDS_PER_FILTER = 500
DUPLICATE_KEY = 11000


@dataclass
class PendingSignup:
    """One sign-up on its way to the database, with the work that must follow it."""

    user: dict[str, Any]
    sealed_password: bytes = field(repr=False)
    #: Who does the work (slow step, then hash): this process, or ``UNOWNED`` if it had no room.
    owner: str
    #: Set by the group commit when this item's documents could not all be written.
    error: BaseException | None = field(default=None, repr=False)
    #: The id of this item's work documents (``sealed_passwords``, and ``pending`` for
    #: overflow), named before the first write so that a retry writes the same ones again.
    work_batch: ObjectId | None = None

    @property
    def user_id(self) -> ObjectId:
        user_id = self.user["_id"]
        assert isinstance(user_id, ObjectId)
        return user_id


Passwords = tuple[tuple[ObjectId, bytes], ...]


@dataclass(frozen=True)
class AdoptedBatch:
    """A batch of work taken over or found again, with what is still to do (a take-over may
    be late): the users whose slow step is to run, and how many of the batch's passwords the
    process that found it is to hash, from a ``sealed_passwords`` document of its own."""

    batch_id: ObjectId
    unprocessed: tuple[ObjectId, ...]
    to_hash: int = 0
    #: The steps are recorded by the batch's ``sealed_passwords`` document alone (no
    #: ``pending`` one): that document must outlive them.
    recorded_by_passwords: bool = False


@dataclass(frozen=True)
class WorkBatch:
    """A batch of work as a document names it: its id, whose it is, and its users (all of a
    ``sealed_passwords`` document's, or those a ``pending`` one is to list)."""

    batch_id: ObjectId
    owner: str
    users: tuple[ObjectId, ...]


@dataclass(frozen=True)
class SealedBatch:
    """One batch of sealed passwords, as the hasher reads it from ``sealed_passwords``."""

    batch_id: ObjectId
    passwords: Passwords = field(repr=False)


@dataclass
class LeaseView:
    """What the heartbeats in ``processes`` say, read in one go."""

    dead: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    #: The latest time a process said it stored unowned work (None: none did).
    unowned_at: datetime | None = None


@dataclass
class FinishRound:
    """What one round of the finish writer sends, in this order: the users' updates, then the
    deletion of the work documents whose every update is acknowledged."""

    #: Users whose slow step succeeded, by the number of attempts to record on them (0 for a
    #: first-try success, which records nothing): one update by ``_id: {$in}`` each.
    processed: dict[int, list[ObjectId]] = field(default_factory=dict)
    #: Other fields to set, user by user (a password hash, a retry's state).
    fields: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    #: Batches whose slow steps are all done: their ``pending`` documents go.
    pending_done: list[ObjectId] = field(default_factory=list)
    #: Batches whose passwords are all hashed (and whose steps are done, where that document
    #: records them): their ``sealed_passwords`` documents go.
    sealed_done: list[ObjectId] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processed or self.fields or self.pending_done or self.sealed_done)


class WriteRefused(Exception):
    """The database refused this one document (the others in its batch may have been written)."""


class ClaimInterrupted(Exception):
    """An adoption failed once its claims were sent: these batches may be the adopter's now,
    and nobody else would take them over while it lives."""

    def __init__(self, batch_ids: list[ObjectId], cause: str) -> None:
        super().__init__(f"an adoption of {len(batch_ids)} batches was interrupted: {cause}")
        self.batch_ids = batch_ids


async def insert_unordered(
    collection: Collection, documents: list[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Insert ``documents`` (each with its ``_id``) in one unordered ``insert`` command; the
    write errors of those refused (``index``, ``code``, ``errmsg``), the others being written.

    One command rather than txmongo's ``insert_many``, whose bulk machinery (runs, index maps,
    merged results), needless for the one message a batch always is here, cost about 40% more
    client CPU per message, and squad's workers 7% more per sign-up (docs/performance.md). A
    batch fits one command: at most a few hundred users of a 16 KiB body each, far under
    MongoDB's 16 MiB. Raises when the database refused the whole command, and when the write
    concern was not met: then nothing may be acknowledged.
    """
    command: dict[str, Any] = {
        "insert": collection.name,
        "documents": documents,
        "ordered": False,
    }
    concern = collection.write_concern.document
    if concern:
        command["writeConcern"] = concern
    reply = await collection.database.command(command, timeout=timeout)
    concern_error = reply.get("writeConcernError")
    if concern_error:
        raise WriteConcernError(
            str(concern_error.get("errmsg", "write concern not met")),
            concern_error.get("code"),
            concern_error,
        )
    return list(reply.get("writeErrors", []))


class IStore(Interface):
    """Everything squad's logic asks of its database; every call takes at most ``timeout``
    seconds (a few times that for background work) or fails."""

    timeout: float = Attribute("Seconds a request-path call may take before it fails.")

    async def ping() -> None:
        """Answer once the database answers."""

    async def insert_signups(batch: list[PendingSignup], hasher: str) -> None:  # noqa: N805 (an interface method has no self)
        """Write a batch's work (its sealed passwords owned by ``hasher``), then its users,
        marking each item that failed."""

    async def find_user(user_id: ObjectId) -> dict[str, Any] | None:  # noqa: N805 (an interface method has no self)
        """A user by id, or None."""

    async def find_idempotency_record(key: str) -> dict[str, Any] | None:  # noqa: N805 (an interface method has no self)
        """The first answer recorded for an Idempotency-Key, or None."""

    async def insert_idempotency_record(record: dict[str, Any]) -> bool:  # noqa: N805 (an interface method has no self)
        """Record a first answer; False when another request recorded this key first."""

    async def replace_idempotency_record(record: dict[str, Any]) -> None:  # noqa: N805 (an interface method has no self)
        """Reuse a key whose 24 hours are over."""

    async def apply_finishes(round: FinishRound, now: datetime) -> None:  # noqa: N805 (an interface method has no self)
        """Write one finish round: updates, then deletions."""

    async def find_sealed(batch_id: ObjectId) -> SealedBatch | None:  # noqa: N805 (an interface method has no self)
        """A batch of sealed passwords by id, or None."""

    async def sealed_batches_of(owners: Sequence[str]) -> list[WorkBatch]:  # noqa: N805 (an interface method has no self)
        """The sealed-password batches these dead owners left."""

    async def record_steps_left(batches: Sequence[WorkBatch]) -> int:  # noqa: N805 (an interface method has no self)
        """Record in ``pending``, for their dead owners, the slow steps still to run in these
        batches, where a ``pending`` document does not already; how many it wrote."""

    async def record_steps(records: Sequence[WorkBatch]) -> int:  # noqa: N805 (an interface method has no self)
        """Write these ``pending`` documents (batch, owner, users still to process), but
        where one is already there; how many it wrote."""

    async def claim_sealed(owner: str, batch_ids: Sequence[ObjectId]) -> None:  # noqa: N805 (an interface method has no self)
        """Make ``owner`` the owner of these sealed-password batches."""

    async def heartbeat(owner: str, alive_until: datetime, about: dict[str, Any]) -> None:  # noqa: N805 (an interface method has no self)
        """Renew ``owner``'s lease."""

    async def lease_view(now: datetime) -> LeaseView:  # noqa: N805 (an interface method has no self)
        """The dead and live processes, and the latest sign of unowned work."""

    async def mark_stopped(owner: str, unowned_at: datetime | None = None) -> None:  # noqa: N805 (an interface method has no self)
        """Let ``owner``'s lease lapse now, so its work is taken over at once."""

    async def forget_process(owner: str) -> None:  # noqa: N805 (an interface method has no self)
        """Delete a dead process's heartbeat."""

    async def adopt(
        owner: str,  # noqa: N805 (an interface method has no self)
        limit: int,
        from_owners: Sequence[str],
        only: Sequence[ObjectId] = (),
    ) -> list[AdoptedBatch]:
        """Take up to ``limit`` batches of work from these owners (for ``owner``), only those
        of ``only`` when it names some."""

    async def find_work(batch_id: ObjectId) -> AdoptedBatch | None:  # noqa: N805 (an interface method has no self)
        """One of this process's batches of work by id, with what is still to do, or None."""

    async def delete_everything(now: datetime | None = None) -> None:  # noqa: N805 (an interface method has no self)
        """``DELETE /collections``."""

    async def last_flush() -> tuple[int, datetime]:
        """How many times DELETE /collections ran, and when it last did."""


@implementer(IStore)
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
        self.sealed_passwords: Collection = database[SEALED_PASSWORDS]
        self.processes: Collection = database[PROCESSES]
        self.idempotency_keys: Collection = database[IDEMPOTENCY_KEYS]
        quiet = background if background is not None else database
        self.background_users: Collection = quiet[USERS]
        self.background_pending: Collection = quiet[PENDING]
        self.background_sealed: Collection = quiet[SEALED_PASSWORDS]

    async def ping(self) -> None:
        await self.database.command("ping", timeout=self.timeout)

    # -- sign-ups ---------------------------------------------------------------------------

    async def insert_signups(self, batch: list[PendingSignup], hasher: str) -> None:
        """Write a batch of sign-ups, marking each item that failed.

        The work goes first: one ``sealed_passwords`` document per owner of slow steps
        (normally one for the whole batch) with the users' ids and sealed passwords, owned by
        ``hasher``, the process whose hasher has them whoever runs the slow steps. Where that
        owner is ``hasher`` itself (every batch but overflow) the document records the steps as
        well, so it is the one write before the users; overflow also gets a small ``pending``
        document, sent alongside, for any process to adopt. Then, once the work is
        acknowledged, the users in one bulk insert. A user is only ever visible with its work
        already recorded, so an acknowledged user can never be left without its slow step or
        its hash. Work for a user whose own insert then fails is harmless: finishing it
        updates nothing. A work document that already exists was written by an earlier
        attempt of this same batch (the ids are squad's own): that is success, not a failure.
        Raises only when the whole batch failed (timeout, lost connection).
        """
        work = [item for item in batch if item.error is None]
        by_owner: dict[str, list[PendingSignup]] = {}
        for item in work:
            by_owner.setdefault(item.owner, []).append(item)
        groups = [(_batch_id(items), owner, items) for owner, items in by_owner.items()]
        if groups:
            passwords = [
                {
                    "_id": batch_id,
                    "owner": hasher,
                    "users": [item.user_id for item in items],
                    "sealed": [item.sealed_password for item in items],
                }
                for batch_id, _, items in groups
            ]
            pooled = [group for group in groups if group[1] != hasher]
            if not pooled:
                await self._insert_work(self.sealed_passwords, passwords, groups)
            else:
                slow_steps = [
                    {"_id": batch_id, "owner": owner, "users": [item.user_id for item in items]}
                    for batch_id, owner, items in pooled
                ]
                # In parallel: one round trip before the users instead of two.
                await gatherResults(
                    [
                        self._insert_work(self.sealed_passwords, passwords, groups),
                        self._insert_work(self.pending, slow_steps, pooled),
                    ],
                    consumeErrors=True,
                ).addErrback(_first_error)
        work = [item for item in work if item.error is None]
        await self._insert_marking(self.users, [item.user for item in work], work)

    def _insert_work(
        self,
        collection: Collection,
        documents: list[dict[str, Any]],
        groups: list[tuple[ObjectId, str, list[PendingSignup]]],
    ) -> Deferred[None]:
        async def insert() -> None:
            for entry in await insert_unordered(collection, documents, self.timeout):
                if entry.get("code") == DUPLICATE_KEY:
                    continue  # an earlier attempt of this batch wrote it
                refused = WriteRefused(str(entry.get("errmsg", "write error")))
                for item in groups[int(entry["index"])][2]:
                    item.error = refused

        return ensureDeferred(insert())

    def _insert_marking(
        self, collection: Collection, documents: list[dict[str, Any]], items: list[PendingSignup]
    ) -> Deferred[None]:
        async def insert() -> None:
            if not documents:
                return
            for entry in await insert_unordered(collection, documents, self.timeout):
                items[int(entry["index"])].error = WriteRefused(
                    str(entry.get("errmsg", "write error"))
                )

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

    async def apply_finishes(self, round: FinishRound, now: datetime) -> None:
        """One finish round on the background connection: the users' updates, then the work
        documents whose updates are all acknowledged (so a crash in between repeats work but
        never loses it).

        The users verified with the same record share one update by ``_id: {$in}`` (one SQL
        statement on patched FerretDB), stamped with ``now``; the other updates go user by
        user by ``_id``, in bulk messages; each is a ``$set`` of top-level scalars. The
        deletions of all the round's batches take one message per collection.
        """
        timeout = self.timeout * 4
        for attempts, user_ids in round.processed.items():
            verified = {**verified_fields(attempts), "date_updated": now}
            for chunk in _chunks(user_ids, IDS_PER_FILTER):
                await self.background_users.update_many(
                    {"_id": {"$in": chunk}}, {"$set": verified}, timeout=timeout
                )
        operations = [
            UpdateOne(
                {"_id": user_id},
                {"$set": {**fields, "date_updated": now} if "processed" in fields else fields},
            )
            for user_id, fields in round.fields.items()
        ]
        for operations_chunk in _chunks(operations, BULK_OPERATIONS_PER_MESSAGE):
            await self.background_users.bulk_write(operations_chunk, ordered=False, timeout=timeout)
        for collection, done in (
            (self.background_pending, round.pending_done),
            (self.background_sealed, round.sealed_done),
        ):
            for chunk in _chunks(done, IDS_PER_FILTER):
                await collection.delete_many({"_id": {"$in": chunk}}, timeout=timeout)

    # -- the password-hash queue ------------------------------------------------------------

    async def find_sealed(self, batch_id: ObjectId) -> SealedBatch | None:
        """A batch of sealed passwords by its id; None once it was hashed (or flushed)."""
        found = await self.background_sealed.find(
            {"_id": batch_id}, limit=-1, timeout=self.timeout * 4
        )
        return SealedBatch(batch_id, _passwords(found[0])) if found else None

    async def sealed_batches_of(self, owners: Sequence[str]) -> list[WorkBatch]:
        """The batches of sealed passwords that ``owners`` (dead processes) left. On FerretDB
        this reads the whole collection: it is only asked when a process died, never
        periodically."""
        found = await self.background_sealed.find(
            {"owner": _one_of(owners)}, {"owner": 1, "users": 1}, timeout=self.timeout * 20
        )
        return [
            WorkBatch(doc["_id"], str(doc["owner"]), tuple(doc.get("users", []))) for doc in found
        ]

    async def record_steps_left(self, batches: Sequence[WorkBatch]) -> int:
        """Record in ``pending``, under each batch's dead owner (so the usual take-over adopts
        them), the slow steps still to run of these batches, whose ``sealed_passwords``
        documents may have been their only record; how many documents it wrote."""
        processed, _ = await self._done_of([user for batch in batches for user in batch.users])
        return await self.record_steps(
            [
                WorkBatch(batch.batch_id, batch.owner, left)
                for batch in batches
                if (left := tuple(user for user in batch.users if user not in processed))
            ]
        )

    async def record_steps(self, records: Sequence[WorkBatch]) -> int:
        """Write a ``pending`` document for each of these batches (its owner, the users still
        to process); how many it wrote. One already there (the batch was overflow, or written
        by an older squad, or recorded before) holds the same steps: it stays as it is."""
        documents = [
            {"_id": record.batch_id, "owner": record.owner, "users": list(record.users)}
            for record in records
        ]
        there = await self._insert_unless_there(self.pending, documents)
        return len(documents) - len(there)

    async def _insert_unless_there(
        self, collection: Collection, documents: list[dict[str, Any]]
    ) -> set[int]:
        """Insert background documents, in bulk messages; the indexes of those already there
        (a duplicate ``_id``: squad names its documents itself). Any other refusal raises."""
        there: set[int] = set()
        for start in range(0, len(documents), BULK_OPERATIONS_PER_MESSAGE):
            chunk = documents[start : start + BULK_OPERATIONS_PER_MESSAGE]
            refused = await insert_unordered(collection, chunk, self.timeout * 4)
            if any(entry.get("code") != DUPLICATE_KEY for entry in refused):
                raise BulkWriteError({"writeErrors": refused})
            there.update(start + int(entry["index"]) for entry in refused)
        return there

    async def claim_sealed(self, owner: str, batch_ids: Sequence[ObjectId]) -> None:
        for chunk in _chunks(list(batch_ids), IDS_PER_FILTER):
            await self.background_sealed.update_many(
                {"_id": {"$in": chunk}}, {"$set": {"owner": owner}}, timeout=self.timeout * 4
            )

    # -- ownership of pending work ----------------------------------------------------------

    async def heartbeat(self, owner: str, alive_until: datetime, about: dict[str, Any]) -> None:
        # Never over a hand-over (mark_stopped): a renewal that timed out may still land after
        # it, and would make the stopped process look alive for a whole lease. Then the filter
        # misses, the upsert hits the existing _id, and the late renewal fails instead.
        await self.processes.update_one(
            {"_id": owner, "alive_until": {"$ne": _EPOCH}},
            {"$set": {"alive_until": alive_until, **about}},
            upsert=True,
            timeout=self.timeout,
        )

    async def lease_view(self, now: datetime) -> LeaseView:
        """In one read of the small ``processes`` collection: the processes whose heartbeat
        lapsed, those alive, and the latest time any process said it stored unowned work, so
        that the expensive look for unowned work happens only when there may be some."""
        found = await self.processes.find({}, timeout=self.timeout)
        view = LeaseView()
        for process in found:
            if process["_id"] == FLUSH_MARK:
                continue
            if _as_naive(process["alive_until"]) < _as_naive(now):
                view.dead.append(str(process["_id"]))
            else:
                view.live.append(str(process["_id"]))
            mark = process.get("unowned_at")
            if mark is not None and (view.unowned_at is None or _as_naive(mark) > view.unowned_at):
                view.unowned_at = _as_naive(mark)
        return view

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

    async def adopt(
        self,
        owner: str,
        limit: int,
        from_owners: Sequence[str],
        only: Sequence[ObjectId] = (),
    ) -> list[AdoptedBatch]:
        """Take up to ``limit`` batches of slow steps owned by ``from_owners`` (dead processes,
        or the pool ``UNOWNED``; among ``only`` when it names some), and learn which of their
        users are still unprocessed (a take-over may be late).

        Claimed straight from the dead owner, batch by batch. On FerretDB two processes may
        adopt the same batch (its updates are not atomic,
        https://github.com/FerretDB/FerretDB/issues/3040); finishing is idempotent, so that
        costs a repeat, never a loss. Raises ``ClaimInterrupted`` when it fails once the claims
        were sent (the database went away): the caller adopts those batches again, by id.
        """
        if limit <= 0 or not from_owners:
            return []
        query: dict[str, Any] = {"owner": _one_of(from_owners)}
        if only:
            query = {"_id": {"$in": list(only)}, **query}
        candidates = await self.pending.find(query, limit=-limit, timeout=self.timeout * 4)
        if not candidates:
            return []
        try:
            return await self._claim(owner, candidates)
        except Exception as error:
            raise ClaimInterrupted([doc["_id"] for doc in candidates], str(error)) from error

    async def _claim(self, owner: str, candidates: list[dict[str, Any]]) -> list[AdoptedBatch]:
        # On MongoDB each claim holds only if the batch is still owned by whom we found it
        # with, so two processes never both take it. On FerretDB that condition turns the
        # update into a scan of `pending`, and its updates are not atomic anyway: there the
        # claim is by _id alone and a race costs a repeat.
        exclusive = await self._filters_beyond_id_are_cheap()
        claims = [
            UpdateOne(
                {"_id": doc["_id"], "owner": doc["owner"]} if exclusive else {"_id": doc["_id"]},
                {"$set": {"owner": owner}},
            )
            for doc in candidates
        ]
        for chunk in _chunks(claims, BULK_OPERATIONS_PER_MESSAGE):
            await self.pending.bulk_write(chunk, ordered=False, timeout=self.timeout * 4)
        processed, hashed = await self._done_of(
            [u for doc in candidates for u in doc.get("users", [])]
        )
        carried = await self._carry_sealed_over(owner, candidates, hashed)
        return [
            AdoptedBatch(doc["_id"], _unprocessed(doc, processed), carried.get(doc["_id"], 0))
            for doc in candidates
        ]

    async def _carry_sealed_over(
        self, owner: str, docs: list[dict[str, Any]], hashed: set[ObjectId]
    ) -> dict[ObjectId, int]:
        """The passwords an older squad left sealed inside these ``pending`` documents and not
        hashed yet, copied once to ``sealed_passwords`` for ``owner`` to hash; how many, by
        batch. A batch already there (that version moved it, then died before deleting its
        ``pending`` document) is taken over with that collection instead."""
        copies = []
        for doc in docs:
            if not doc.get("sealed"):
                continue  # this version's shape: the passwords are in sealed_passwords already
            unhashed = [pair for pair in _passwords(doc) if pair[0] not in hashed]
            if unhashed:
                copies.append(
                    {
                        "_id": doc["_id"],
                        "owner": owner,
                        "users": [user_id for user_id, _ in unhashed],
                        "sealed": [sealed for _, sealed in unhashed],
                    }
                )
        carried = {copy["_id"]: len(copy["users"]) for copy in copies}
        if not copies:
            return carried
        for index in await self._insert_unless_there(self.sealed_passwords, copies):
            carried.pop(copies[index]["_id"], None)
        return carried

    async def _done_of(self, user_ids: list[ObjectId]) -> tuple[set[ObjectId], set[ObjectId]]:
        """Of these users: those processed, and those whose password is hashed."""
        processed: set[ObjectId] = set()
        hashed: set[ObjectId] = set()
        stored: set[ObjectId] = set()
        for chunk in _chunks(user_ids, IDS_PER_FILTER):
            found = await self.users.find(
                {"_id": {"$in": chunk}},
                {"processed": 1, "password_hash": 1},
                timeout=self.timeout * 4,
            )
            for user in found:
                stored.add(user["_id"])
                if user.get("processed"):
                    processed.add(user["_id"])
                if "password_hash" in user:
                    hashed.add(user["_id"])
        # A user whose insert failed after its work was written: nothing to do for it.
        missing = set(user_ids) - stored
        return processed | missing, hashed | missing

    async def find_work(self, batch_id: ObjectId) -> AdoptedBatch | None:
        """One of this process's own batches of work by its id, with what is still to do (its
        passwords are this process's to hash): from its ``pending`` document, or from its
        ``sealed_passwords`` one where that alone records the steps; None if neither is in the
        database (a write that timed out before it landed)."""
        found = await self.pending.find({"_id": batch_id}, limit=-1, timeout=self.timeout)
        by_passwords = not found
        if by_passwords:
            found = await self.sealed_passwords.find(
                {"_id": batch_id}, {"users": 1}, limit=-1, timeout=self.timeout
            )
        if not found:
            return None
        users = list(found[0].get("users", []))
        processed, hashed = await self._done_of(users)
        return AdoptedBatch(
            batch_id,
            _unprocessed(found[0], processed),
            sum(1 for user_id in users if user_id not in hashed),
            recorded_by_passwords=by_passwords,
        )

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
        for collection in (self.users, self.pending, self.sealed_passwords, self.idempotency_keys):
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


def _batch_id(items: list[PendingSignup]) -> ObjectId:
    """The id of the work document of ``items``: the one named by an earlier attempt, or new."""
    named = items[0].work_batch
    batch_id = (
        named
        if named is not None and all(item.work_batch == named for item in items)
        else ObjectId()
    )
    for item in items:
        item.work_batch = batch_id
    return batch_id


def _passwords(doc: dict[str, Any]) -> Passwords:
    return tuple(
        (user_id, bytes(sealed))
        for user_id, sealed in zip(doc.get("users", []), doc.get("sealed", []), strict=True)
    )


def _unprocessed(doc: dict[str, Any], processed: set[ObjectId]) -> tuple[ObjectId, ...]:
    return tuple(user_id for user_id in doc.get("users", []) if user_id not in processed)


def _first_error(failure: Failure) -> Failure:
    """``gatherResults`` wraps the first failure; re-raise the error itself."""
    failure.trap(FirstError)
    error = failure.value
    assert isinstance(error, FirstError)
    return error.subFailure


Chunked = TypeVar("Chunked")


def _one_of(values: Sequence[str]) -> Any:
    """A filter on one of ``values``: a plain equality for a single value, which FerretDB's
    PostgreSQL backend evaluates in SQL instead of decoding every document in Go."""
    return values[0] if len(values) == 1 else {"$in": list(values)}


def _chunks(items: list[Chunked], size: int) -> list[list[Chunked]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _as_naive(moment: datetime) -> datetime:
    # txmongo hands back naive UTC datetimes by default; compare like with like.
    return moment.replace(tzinfo=None)
