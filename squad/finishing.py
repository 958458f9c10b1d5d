"""Batched writes of finished background work, on their own database connection.

Each finished slow step or password hash is one small update of a user, and each user whose
work is all done is one delete from ``pending``. One at a time they would cost a database round
trip each and compete with sign-ups; here they are gathered for ``interval`` seconds and sent as
two bulk writes on a separate connection, so sign-ups (on the main pool) never queue behind
them. When the database is down the work simply waits in memory and goes out later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bson import ObjectId
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from squad.store import Store

__all__ = ["FinishWriter"]

log = Logger()


class FinishWriter:
    """Gathers user updates and pending deletions; writes them in order, in batches."""

    def __init__(
        self,
        clock: IReactorTime,
        store: Store,
        interval: float = 0.2,
        max_batch: int = 1000,
        busy: Callable[[], bool] = lambda: False,
        max_batch_when_busy: int = 32,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        # While sign-ups are flowing, background writes take a trickle of the database (whose
        # SQLite backend has a single writer) and catch up once the burst is over.
        self._busy = busy
        self._max_batch_when_busy = max_batch_when_busy
        self._updates: dict[ObjectId, dict[str, Any]] = {}
        self._finished: dict[ObjectId, None] = {}
        self._loop = LoopingCall(self._guarded_flush)
        self._loop.clock = clock
        self.interval = interval
        self.written = 0
        self._looping: Deferred[LoopingCall] | None = None

    @property
    def backlog(self) -> int:
        return len(self._updates) + len(self._finished)

    def set_fields(self, user_id: ObjectId, fields: dict[str, Any]) -> None:
        self._updates.setdefault(user_id, {}).update(fields)

    def finished(self, user_id: ObjectId) -> None:
        """Delete the user's pending document once its updates so far are acknowledged."""
        self._finished[user_id] = None

    def clear(self) -> None:
        self._updates.clear()
        self._finished.clear()

    def start(self) -> None:
        # Fires once the loop is stopped and the flush it started, if any, has ended.
        self._looping = self._loop.start(self.interval, now=False)

    def stop(self) -> Deferred[None]:
        """Stop the timer, let a write in flight end, and make a last attempt to write what is
        still queued."""
        if self._loop.running:
            self._loop.stop()
        return ensureDeferred(self._last_flush())

    async def _last_flush(self) -> None:
        # Not beside a write in flight: two flushes at once could delete a user's pending
        # document while the update before it is still unsent, and a write left behind would
        # outlive the service (its txmongo timeout still armed).
        if self._looping is not None:
            looping, self._looping = self._looping, None
            await looping
        await self._guarded_flush()

    def _guarded_flush(self) -> Deferred[None]:
        d = ensureDeferred(self.flush())
        d.addErrback(
            lambda failure: log.warn(
                "Finished work not written yet ({error}); retrying.",
                error=failure.getErrorMessage(),
            )
        )
        return d

    async def flush(self) -> None:
        if not self._updates and not self._finished:
            return
        limit = self._max_batch_when_busy if self._busy() else self._max_batch
        updates: dict[ObjectId, dict[str, Any]] = {}
        while self._updates and len(updates) < limit:
            user_id, fields = next(iter(self._updates.items()))
            del self._updates[user_id]
            updates[user_id] = fields
        # A pending document goes only after every update of its user is acknowledged.
        finished = [
            user_id for user_id in list(self._finished)[:limit] if user_id not in self._updates
        ]
        for user_id in finished:
            del self._finished[user_id]
        try:
            await self._store.apply_finishes(updates, finished)
        except BaseException:
            for user_id, fields in updates.items():
                self._updates[user_id] = {**fields, **self._updates.get(user_id, {})}
            for user_id in finished:
                self._finished[user_id] = None
            raise
        self.written += len(updates)
