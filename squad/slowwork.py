"""The background work of every stored user, at least once, surviving crashes.

After a sign-up is acknowledged two things remain: the slow step (then ``processed: true``) and
hashing the sealed password. The process that accepted the sign-up does both, after the response
has been written. At most ``capacity`` users' work is held in memory per process; a sign-up
beyond that is stored as unowned work and adopted from the database when room frees up. Work
of a process that died is adopted the same way, straight from it, when ``squad.ownership``
finds its heartbeat lapsed.
Finishing is idempotent, so doing an item twice (a take-over race on FerretDB) is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from bson import ObjectId
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from squad.documents import bson_now
from squad.finishing import FinishWriter
from squad.resilience import Backoff
from squad.slowstep import Verification
from squad.store import UNOWNED, Store

__all__ = ["SlowWork", "Work"]

# Below 101: a single-batch find (negative limit) answers at most 101 documents on MongoDB and
# FerretDB alike, and a round must come back short to mean "nothing more to adopt".
ADOPT_PER_ROUND = 100

log = Logger()


@dataclass(eq=False)
class Work:
    """What is left to do for one user."""

    user_id: ObjectId
    sealed_password: bytes | None = field(repr=False)
    processed: bool = False
    hashed: bool = False
    attempts: int = 0
    accepted_at: float = 0.0


def _as_deferred(step: Awaitable[None]) -> Deferred[None]:
    """The stand-in answers a Deferred (no coroutine to wrap); an HTTP call is a coroutine."""
    if isinstance(step, Deferred):
        return step
    return ensureDeferred(cast(Coroutine[Any, Any, None], step))


class Hasher(Protocol):
    def submit(self, work: Work) -> None: ...

    def drop_all(self) -> None: ...


class SlowWork(Service):
    """The background pipeline of one process: slow steps, hashing, finishing writes."""

    def __init__(
        self,
        clock: IReactorTime,
        store: Store,
        verification: Verification,
        writer: FinishWriter,
        owner: str,
        capacity: int = 30_000,
        backoff: Backoff | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._verification = verification
        self.writer = writer
        self.hasher: Hasher | None = None
        self.owner = owner
        self.capacity = capacity
        self._backoff = backoff or Backoff()
        self._works: dict[ObjectId, Work] = {}
        self._steps: dict[ObjectId, Deferred[None]] = {}
        self._reserved = 0
        self._overflowed = False
        # When this process last stored a sign-up as unowned (None: never): the lease tells the
        # other processes, which look for unowned work only when there may be some.
        self.unowned_written_at: float | None = None
        self.completed = 0
        self.failed_attempts = 0

    @property
    def held(self) -> int:
        """Users whose work is in memory now, plus slots promised to sign-ups being written."""
        return len(self._works) + self._reserved

    @property
    def running_steps(self) -> int:
        return len(self._steps)

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

    def accept(self, user_id: ObjectId, sealed_password: bytes, owner: str) -> None:
        """Start the work of a stored user (called after its response was written)."""
        if owner != self.owner:
            return  # stored as unowned: some process adopts it when it has room
        self._reserved -= 1
        self._start(Work(user_id, sealed_password, accepted_at=self._clock.seconds()))

    def _start(self, work: Work) -> None:
        if not self.running or work.user_id in self._works:
            return
        self._works[work.user_id] = work
        if not work.processed:
            self._attempt(work)
        if not work.hashed and self.hasher is not None and work.sealed_password is not None:
            self.hasher.submit(work)
        else:
            work.hashed = True
        self._maybe_done(work)

    def password_hashed(self, work: Work, password_hash: str) -> None:
        """Called by the hasher; the sealed password is dropped with the pending document."""
        if self._works.get(work.user_id) is not work:
            return  # dropped meanwhile (DELETE /collections)
        self.writer.set_fields(work.user_id, {"password_hash": password_hash})
        work.hashed = True
        work.sealed_password = None
        self._maybe_done(work)

    def _maybe_done(self, work: Work) -> None:
        if work.processed and work.hashed:
            self.writer.finished(work.user_id)
            self._works.pop(work.user_id, None)

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
        self.writer.set_fields(
            work.user_id,
            {
                "processed": True,
                "date_updated": bson_now(self._clock.seconds()),
                "verification": {"state": "verified", "attempts": work.attempts},
            },
        )
        work.processed = True
        self.completed += 1
        self._maybe_done(work)

    def _attempt_failed(self, failure: Failure, work: Work) -> None:
        self._steps.pop(work.user_id, None)
        if failure.check(CancelledError):
            return  # stopping or dropped: the work stays in the database for whoever is next
        if not self.running or self._works.get(work.user_id) is not work:
            return  # dropped or stopping meanwhile: nothing to retry
        self.failed_attempts += 1
        self.writer.set_fields(
            work.user_id,
            {
                "verification": {
                    "state": "retrying",
                    "attempts": work.attempts,
                    "last_error": failure.getErrorMessage(),
                    "last_attempt": bson_now(self._clock.seconds()),
                }
            },
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
        room, round after round; our own overflow is always looked for.

        True when everything of theirs was seen (the last round came back short), so a dead
        owner can be forgotten; False when room ran out or the process stopped first.
        """
        if not owners and self._overflowed:
            owners = (UNOWNED,)
        if not owners:
            return True
        while self.running:
            room = self.capacity - self.held
            if room <= 0:
                return False
            # Small rounds: each must finish within the store's timeouts on a busy FerretDB.
            wanted = min(room, ADOPT_PER_ROUND)
            adopted_now = await self._store.adopt(self.owner, wanted, owners)
            for adopted in adopted_now:
                self._start(
                    Work(
                        adopted.user_id,
                        adopted.sealed_password,
                        processed=adopted.processed,
                        hashed=adopted.hashed,
                        accepted_at=self._clock.seconds(),
                    )
                )
            if len(adopted_now) < wanted:
                if UNOWNED in owners:
                    self._overflowed = False
                return True
        return False

    def drop_accepted_before(self, moment: float) -> None:
        """Another process ran DELETE /collections at ``moment``: forget the work of users
        accepted before it (their documents are gone); later ones carry on."""
        for user_id, work in list(self._works.items()):
            if work.accepted_at < moment:
                del self._works[user_id]
                step = self._steps.get(user_id)
                if step is not None:
                    step.cancel()

    def holds(self, work: Work) -> bool:
        """Whether ``work`` is still wanted (not dropped by a flush or a shutdown)."""
        return self._works.get(work.user_id) is work

    def drop_all(self) -> None:
        """Forget all in-memory work (``DELETE /collections`` removed its users)."""
        self._works.clear()  # first, so a cancelled step sees it was dropped and does not retry
        for step in list(self._steps.values()):
            step.cancel()
        self.writer.clear()
        if self.hasher is not None:
            self.hasher.drop_all()

    def startService(self) -> None:
        super().startService()
        self.writer.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # Cancel what is in memory; squad.ownership then hands it all back to the pool. What
        # already finished is written first, so a successor does not repeat it.
        self._works.clear()
        for step in list(self._steps.values()):
            step.cancel()
        return self.writer.stop()
