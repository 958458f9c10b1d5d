"""Runs the slow step for every stored user, at least once, surviving crashes.

The process that accepted a sign-up runs its slow step after the response has been written.
At most ``capacity`` slow steps are held in memory per process; a sign-up beyond that is stored
as unowned work, and adopted from the database when room frees up. Work of a process that died
is handed back by ``squad.ownership`` and adopted the same way. The finish (``processed: true``)
is idempotent, so running a step twice (a take-over race on FerretDB) is harmless.
"""

from __future__ import annotations

from bson import ObjectId
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from squad.documents import bson_now
from squad.resilience import Backoff
from squad.slowstep import Verification
from squad.store import UNOWNED, Store

__all__ = ["SlowWork"]

log = Logger()


class SlowWork(Service):
    """The slow-step pipeline of one process."""

    def __init__(
        self,
        clock: IReactorTime,
        store: Store,
        verification: Verification,
        owner: str,
        capacity: int = 50_000,
        backoff: Backoff | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._verification = verification
        self.owner = owner
        self.capacity = capacity
        self._backoff = backoff or Backoff()
        self._running: dict[ObjectId, Deferred[None]] = {}
        self._reserved = 0
        self.completed = 0
        self.failed_attempts = 0

    @property
    def held(self) -> int:
        """Slow steps in memory now, plus slots promised to sign-ups being written."""
        return len(self._running) + self._reserved

    def owner_for_new_signup(self) -> str:
        """Reserve a slot for a sign-up about to be written, or leave it to the pool."""
        if self.running and self.held < self.capacity:
            self._reserved += 1
            return self.owner
        return UNOWNED

    def signup_failed(self, owner: str) -> None:
        """The sign-up whose slot was reserved was not written: free the slot."""
        if owner == self.owner:
            self._reserved -= 1

    def accept(self, user_id: ObjectId, owner: str) -> None:
        """Start the slow step of a stored user (called after its response was written)."""
        if owner != self.owner:
            return  # stored as unowned: some process adopts it when it has room
        self._reserved -= 1
        self._start(user_id)

    def _start(self, user_id: ObjectId) -> None:
        if not self.running or user_id in self._running:
            return
        done = ensureDeferred(self._run(user_id))
        self._running[user_id] = done
        done.addBoth(self._forget, user_id)

    def _forget(self, result: object, user_id: ObjectId) -> None:
        self._running.pop(user_id, None)

    async def _run(self, user_id: ObjectId) -> None:
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    await self._verification.verify(user_id)
                    break
                except CancelledError:
                    raise
                except Exception as error:
                    self.failed_attempts += 1
                    await self._note_failure(user_id, attempt, str(error))
                    await deferLater(self._clock, self._backoff.delay(attempt))
            attempt = 0
            while True:
                attempt += 1
                try:
                    await self._store.mark_processed(user_id, bson_now(self._clock.seconds()))
                    self.completed += 1
                    return
                except CancelledError:
                    raise
                except Exception as error:
                    log.warn(
                        "Could not mark user {user_id} processed yet ({error}); retrying.",
                        user_id=str(user_id),
                        error=error,
                    )
                    await deferLater(self._clock, min(self._backoff.delay(attempt), 10.0))
        except CancelledError:
            # Stopping: the work stays in the database and is released to the pool.
            return

    async def _note_failure(self, user_id: ObjectId, attempt: int, reason: str) -> None:
        try:
            await self._store.record_slow_failure(
                user_id, attempt, reason, bson_now(self._clock.seconds())
            )
        except Exception as error:
            log.debug("Could not record the failed attempt: {error}", error=error)

    async def refill(self) -> None:
        """Adopt unowned slow steps while there is room (called on every lease round)."""
        room = self.capacity - self.held
        if not self.running or room <= 0:
            return
        for user_id in await self._store.adopt_slow_steps(self.owner, min(room, 1000)):
            self._start(user_id)

    def drop_all(self) -> None:
        """Forget the in-memory slow steps (``DELETE /collections`` removed their users)."""
        for done in list(self._running.values()):
            done.cancel()

    def stopService(self) -> None:
        super().stopService()
        # Cancel what is in memory; squad.ownership then hands it all back to the pool.
        self.drop_all()
