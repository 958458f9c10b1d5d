"""The slow step of every stored user, at least once, surviving crashes.

After a sign-up is acknowledged its slow step runs (then ``processed: true``), in the process
that accepted it, once the response has been written. The password hash is not part of it: it
has its own queue (``squad.background.hashing``), so the slow step never waits for CPU-bound
hashing. Work is recorded per group-commit batch: by its ``sealed_passwords`` document, which
then goes only once both its passwords are hashed and its steps done (this module says when),
or, for overflow and work taken over, by a small ``pending`` document. It is held in memory
per user: at most ``capacity`` users per process. A
sign-up beyond that is stored as unowned work and adopted from the database when room frees
up. Work of a process that died is adopted the same way, straight from it, when
``squad.background.takeover`` finds its heartbeat lapsed. Finishing is idempotent, so doing an
item twice (a take-over race on FerretDB) is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

from bson import ObjectId
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from squad.background.finishing import FinishWriter
from squad.background.resilience import Backoff
from squad.background.verification import Verification
from squad.storage.documents import bson_now, retrying_fields
from squad.storage.store import UNOWNED, AdoptedBatch, ClaimInterrupted, IStore, WorkBatch

__all__ = ["SlowWork", "Work"]

# Below 101: a single-batch find (negative limit) answers at most 101 documents on MongoDB and
# FerretDB alike, and a round must come back short to mean "nothing more to adopt".
ADOPT_PER_ROUND = 100
# The most users one batch document holds (the group commit's largest batch): adoption asks
# for no more batches than its room can take.
USERS_PER_BATCH = 200
# How long a batch whose write failed as a whole is looked for, in case it landed after all.
UNCERTAIN_SECONDS = 30.0

log = Logger()


@dataclass(eq=False)
class Work:
    """What is left to do for one user: its slow step."""

    user_id: ObjectId
    batch_id: ObjectId
    attempts: int = 0
    accepted_at: float = 0.0
    started: bool = False
    #: Taken over from another process, which may have tried and recorded attempts already.
    resumed: bool = False


@dataclass(eq=False)
class _Batch:
    remaining: int
    held_since: float
    #: Recorded by the batch's ``sealed_passwords`` document alone, not by a ``pending`` one.
    recorded_by_passwords: bool = False
    #: Its passwords are all hashed: the document goes with the last of its steps.
    passwords_done: bool = False


@dataclass(eq=False)
class _Uncertain:
    """A batch whose write failed as a whole, looked for in case it landed after all."""

    owner: str
    size: int
    since: float


def _as_deferred(step: Awaitable[None]) -> Deferred[None]:
    """The stand-in answers a Deferred (no coroutine to wrap); an HTTP call is a coroutine."""
    if isinstance(step, Deferred):
        return step
    return ensureDeferred(cast(Coroutine[Any, Any, None], step))


class SlowWork(Service):
    """The slow steps of one process, and the finishing writes they lead to."""

    def __init__(
        self,
        clock: IReactorTime,
        store: IStore,
        verification: Verification,
        writer: FinishWriter,
        owner: str,
        capacity: int = 30_000,
        backoff: Backoff | None = None,
        on_adopted: Callable[[ObjectId, int], None] = lambda batch_id, to_hash: None,
    ) -> None:
        """``on_adopted(batch_id, to_hash)`` hears of each batch, taken over or found again,
        whose passwords this process is to hash (the hasher queues it)."""
        self._clock = clock
        self._store = store
        self._verification = verification
        self.writer = writer
        self.owner = owner
        self.capacity = capacity
        self._backoff = backoff or Backoff()
        self._works: dict[ObjectId, Work] = {}
        self._batches: dict[ObjectId, _Batch] = {}
        self._steps: dict[ObjectId, Deferred[None]] = {}
        self._uncertain: dict[ObjectId, _Uncertain] = {}
        # Batches an interrupted adoption may have claimed for this process: adopted again by
        # id at the next refill, or they would wait for this process's death.
        self._claimed: dict[ObjectId, None] = {}
        self._reserved = 0
        self._overflowed = False
        # When this process last stored a sign-up as unowned (None: never): the lease tells the
        # other processes, which look for unowned work only when there may be some.
        self.unowned_written_at: float | None = None
        self.completed = 0
        self.failed_attempts = 0
        #: Called with each batch this process is to hash and how many passwords it holds.
        self._on_adopted = on_adopted

    @property
    def held(self) -> int:
        """Users whose work is in memory now, plus slots promised to sign-ups being written."""
        return len(self._works) + self._reserved

    @property
    def running_steps(self) -> int:
        return len(self._steps)

    def oldest_age(self) -> float:
        """Seconds since the oldest batch held here was taken on (0 when none)."""
        for batch in self._batches.values():  # insertion order: the oldest first
            return max(0.0, self._clock.seconds() - batch.held_since)
        return 0.0

    def owner_for_new_signup(self) -> str:
        """Reserve a slot for a sign-up about to be written, or leave it to the pool."""
        if self.running and self.held < self.capacity:
            self._reserved += 1
            return self.owner
        self._overflowed = True
        self.unowned_written_at = self._clock.seconds()
        return UNOWNED

    def signup_failed(self, owner: str) -> None:
        """The sign-up whose slot was reserved was not written: free the slot."""
        if owner == self.owner:
            self._reserved -= 1

    def batch_stored(self, batch_id: ObjectId, owner: str, user_ids: Sequence[ObjectId]) -> None:
        """A batch of work and these of its users were written (before their answers): their
        slots become work, started by ``accept`` once each answer is out. A batch of this
        process's own is recorded by its ``sealed_passwords`` document alone."""
        if owner != self.owner:
            return
        self._reserved -= len(user_ids)
        if not self.running or not user_ids:
            return  # stopping (the batch is handed over with the rest), or none was stored
        now = self._clock.seconds()
        self._batches[batch_id] = _Batch(len(user_ids), now, recorded_by_passwords=True)
        for user_id in user_ids:
            self._works[user_id] = Work(user_id, batch_id, accepted_at=now)

    def batch_uncertain(self, batch_id: ObjectId, owner: str, size: int) -> None:
        """The write of this batch of ``size`` sign-ups (slow steps for ``owner``, passwords for
        this process) failed as a whole, yet may have landed (a timeout does not undo a write):
        look for it at the next rounds, so a stored user is never stranded."""
        self._uncertain[batch_id] = _Uncertain(owner, size, self._clock.seconds())

    def accept(self, user_id: ObjectId) -> None:
        """Start the slow step of a stored user (called after its response was written)."""
        work = self._works.get(user_id)
        if work is not None and not work.started and self.running:
            work.started = True
            self._attempt(work)

    def _take_on(self, adopted: AdoptedBatch, resumed: bool = True) -> None:
        """Hold and start an adopted batch, and have the passwords it brings hashed here."""
        batch_id, unprocessed = adopted.batch_id, adopted.unprocessed
        if batch_id in self._batches:
            return  # ours already (a late look for an uncertain batch)
        if adopted.to_hash:
            self._on_adopted(batch_id, adopted.to_hash)
        if not unprocessed:
            if not adopted.recorded_by_passwords:
                self.writer.pending_done(batch_id)
            return
        now = self._clock.seconds()
        self._batches[batch_id] = _Batch(
            len(unprocessed), now, recorded_by_passwords=adopted.recorded_by_passwords
        )
        for user_id in unprocessed:
            work = self._works[user_id] = Work(
                user_id, batch_id, accepted_at=now, started=True, resumed=resumed
            )
            self._attempt(work)

    def _finish(self, work: Work) -> None:
        self._works.pop(work.user_id, None)
        batch = self._batches.get(work.batch_id)
        if batch is None:
            return
        batch.remaining -= 1
        if batch.remaining <= 0:
            del self._batches[work.batch_id]
            if not batch.recorded_by_passwords:
                self.writer.pending_done(work.batch_id)
            elif batch.passwords_done:
                self.writer.sealed_done(work.batch_id)

    def passwords_done(self, batch_id: ObjectId) -> None:
        """The passwords of this batch are all hashed (or none is left to hash): its
        ``sealed_passwords`` document goes now, or, while it is the only record of slow steps
        running here, with the last of them."""
        batch = self._batches.get(batch_id)
        if batch is not None and batch.recorded_by_passwords:
            batch.passwords_done = True
            return
        self.writer.sealed_done(batch_id)

    # The slow step is a chain of callbacks rather than a coroutine: thousands of users are in
    # it at once, and a suspended coroutine with its Deferreds and closures is some thirty
    # objects for the garbage collector to walk, against a handful for a Deferred and its
    # callbacks (full collections paused the reactor for hundreds of milliseconds).

    def _attempt(self, work: Work) -> None:
        work.attempts += 1
        attempt: Deferred[None]
        try:
            attempt = _as_deferred(self._verification.verify(work.user_id))
        except Exception as error:
            attempt = fail(error)
        self._steps[work.user_id] = attempt
        attempt.addCallbacks(
            self._verified, self._attempt_failed, callbackArgs=(work,), errbackArgs=(work,)
        )

    def _verified(self, result: object, work: Work) -> None:
        self._steps.pop(work.user_id, None)
        if self._works.get(work.user_id) is not work:
            return  # dropped meanwhile (DELETE /collections, shutdown)
        # A first-try success records nothing beyond processed; retries, and a take-over (which
        # may follow recorded retries), leave the final count.
        retried = work.attempts > 1 or work.resumed
        self.writer.processed(work.user_id, work.attempts if retried else 0)
        self.completed += 1
        self._finish(work)

    def _attempt_failed(self, failure: Failure, work: Work) -> None:
        self._steps.pop(work.user_id, None)
        if failure.check(CancelledError):
            return  # stopping or dropped: the work stays in the database for whoever is next
        if not self.running or self._works.get(work.user_id) is not work:
            return  # dropped or stopping meanwhile: nothing to retry
        self.failed_attempts += 1
        self.writer.set_fields(
            work.user_id,
            retrying_fields(
                work.attempts, failure.getErrorMessage(), bson_now(self._clock.seconds())
            ),
        )
        pause: Deferred[None] = deferLater(self._clock, self._backoff.delay(work.attempts))
        self._steps[work.user_id] = pause
        pause.addCallbacks(
            self._retry, self._retry_cancelled, callbackArgs=(work,), errbackArgs=(work,)
        )

    def _retry(self, result: object, work: Work) -> None:
        self._steps.pop(work.user_id, None)
        if self.running and self._works.get(work.user_id) is work:
            self._attempt(work)

    def _retry_cancelled(self, failure: Failure, work: Work) -> None:
        failure.trap(CancelledError)
        self._steps.pop(work.user_id, None)

    async def refill(self, owners: Sequence[str] = (UNOWNED,)) -> bool:
        """Adopt the work of ``owners`` (dead processes, or the pool ``UNOWNED``) while there is
        room, round after round; our own overflow is always looked for, and so are our batches
        whose write failed but may have landed.

        True when everything of theirs was seen (the last round came back short), so a dead
        owner can be forgotten; False when room ran out or the process stopped first.
        """
        await self._look_for_uncertain()
        await self._adopt_claimed()
        if not owners and self._overflowed:
            owners = (UNOWNED,)
        if not owners:
            return True
        while self.running:
            room = self.capacity - self.held
            if room <= 0:
                return False
            # Small rounds: each must finish within the store's timeouts on a busy FerretDB.
            wanted = max(1, min(ADOPT_PER_ROUND, room // USERS_PER_BATCH))
            try:
                adopted_now = await self._store.adopt(self.owner, wanted, owners)
            except ClaimInterrupted as interrupted:
                self._claimed.update(dict.fromkeys(interrupted.batch_ids))
                raise
            for adopted in adopted_now:
                self._take_on(adopted)
            if len(adopted_now) < wanted:
                if UNOWNED in owners:
                    self._overflowed = False
                return True
        return False

    async def _adopt_claimed(self) -> None:
        if not self._claimed or not self.running:
            return
        claimed = list(self._claimed)[:ADOPT_PER_ROUND]
        adopted_now = await self._store.adopt(self.owner, len(claimed), [self.owner], claimed)
        for batch_id in claimed:
            # Not found: the claim did not land (the batch is still its dead owner's, adopted
            # the usual way) or the batch is finished.
            self._claimed.pop(batch_id, None)
        for adopted in adopted_now:
            self._take_on(adopted)

    async def _look_for_uncertain(self) -> None:
        now = self._clock.seconds()
        for batch_id, uncertain in list(self._uncertain.items()):
            if not self.running:
                return
            found = await self._store.find_work(batch_id)
            if found is not None:
                del self._uncertain[batch_id]
                if uncertain.owner == self.owner:
                    self._take_on(found, resumed=False)
                elif found.to_hash:  # unowned steps: whoever adopts them; the hashes are ours
                    self._on_adopted(batch_id, found.to_hash)
                if not found.to_hash:
                    # None of its users stored (or all hashed): its passwords are not needed.
                    self.passwords_done(batch_id)
            elif now - uncertain.since > UNCERTAIN_SECONDS:
                del self._uncertain[batch_id]
                if uncertain.owner == self.owner:
                    # Never landed, so none of its users was stored (they are written after
                    # the work): a passwords document that landed alone is not needed.
                    self.writer.sealed_done(batch_id)
                else:
                    # Unowned steps may have been adopted and finished meanwhile: hash what
                    # is left of the batch, if anything.
                    self._on_adopted(batch_id, uncertain.size)

    def _drop(self, works: Sequence[Work]) -> None:
        for work in works:
            del self._works[work.user_id]
            self._batches.pop(work.batch_id, None)
            step = self._steps.get(work.user_id)
            if step is not None:
                step.cancel()

    def drop_accepted_before(self, moment: float) -> None:
        """Another process ran DELETE /collections at ``moment``: forget the work of users
        accepted before it (their documents are gone); later ones carry on."""
        self._drop([work for work in self._works.values() if work.accepted_at < moment])

    def drop_all(self) -> None:
        """Forget all in-memory work (``DELETE /collections`` removed its users)."""
        self._works.clear()  # first, so a cancelled step sees it was dropped and does not retry
        self._batches.clear()
        self._uncertain.clear()
        self._claimed.clear()
        for step in list(self._steps.values()):
            step.cancel()
        self.writer.clear()

    def startService(self) -> None:
        super().startService()
        self.writer.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # Cancel what is in memory; squad.background.takeover then hands it all back to the pool.
        # Steps recorded only by their passwords' documents are set down in ``pending`` first,
        # so that a successor adopts them at once rather than after reading every passwords
        # document; what already finished is written, so a successor does not repeat it.
        left: dict[ObjectId, list[ObjectId]] = {}
        for work in self._works.values():
            batch = self._batches.get(work.batch_id)
            if batch is not None and batch.recorded_by_passwords:
                left.setdefault(work.batch_id, []).append(work.user_id)
        self._works.clear()
        self._batches.clear()
        for step in list(self._steps.values()):
            step.cancel()
        records = [
            WorkBatch(batch_id, self.owner, tuple(users)) for batch_id, users in left.items()
        ]
        return ensureDeferred(self._hand_over(records))

    async def _hand_over(self, records: list[WorkBatch]) -> None:
        if records:
            try:
                await self._store.record_steps(records)
            except Exception as error:
                log.warn(
                    "Could not record {count} batches of slow steps at shutdown ({error}); the"
                    " process that takes their passwords over records them instead.",
                    count=len(records),
                    error=error,
                )
        await self.writer.stop()
