"""Batched writes of finished background work, on their own database connection.

Each finished slow step is a user to mark ``processed``, each hashed password a field to set,
and each batch whose slow steps or hashes are all done a document to delete. One at a time they
would cost a database round trip each and compete with sign-ups; here they are gathered for
``interval`` seconds and sent together on a separate connection, so sign-ups (on the main pool)
never queue behind them. The users verified in one round share one update
(``_id: {$in: ...}``), a user whose hash is ready in the same round gets both in one update, and
the round's finished batches go in one deletion per collection, so a round costs the database
about what a batch of sign-ups does. Every round sends everything queued: no throttle, so
finishing can never fall behind what is accepted while the database keeps up. When the database
is down the work simply waits in memory and goes out later. One process writes a user's updates
one round at a time, in order, so its slow step's result and its password hash never overwrite
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from squad.background.outages import OutageLog
from squad.storage.documents import bson_now, verified_fields
from squad.storage.store import FinishRound, IStore

__all__ = ["FinishWriter"]

log = Logger()


@dataclass(frozen=True)
class _Queued:
    """What one round was taken from: the queues as they stood when it was taken."""

    processed: dict[ObjectId, int]
    fields: dict[ObjectId, dict[str, Any]]
    pending_done: dict[ObjectId, None]
    sealed_done: dict[ObjectId, None]


class FinishWriter:
    """Gathers user updates and the work documents they finish; writes them in order."""

    def __init__(self, clock: IReactorTime, store: IStore, interval: float = 0.2) -> None:
        self._clock = clock
        self._store = store
        self._processed: dict[ObjectId, int] = {}
        self._fields: dict[ObjectId, dict[str, Any]] = {}
        # Batches whose slow steps are done, and batches whose passwords are hashed (dicts
        # for their order: the oldest are deleted first).
        self._pending_done: dict[ObjectId, None] = {}
        self._sealed_done: dict[ObjectId, None] = {}
        self._loop = LoopingCall(self._guarded_flush)
        self._loop.clock = clock
        self.interval = interval
        self.written = 0
        self._looping: Deferred[LoopingCall] | None = None
        self._outage = OutageLog(log, clock, "Writing finished work")

    @property
    def backlog(self) -> int:
        return (
            len(self._processed)
            + len(self._fields)
            + len(self._pending_done)
            + len(self._sealed_done)
        )

    def processed(self, user_id: ObjectId, attempts: int = 0) -> None:
        """Mark the user ``processed``: its slow step succeeded, and ``attempts`` is the number
        of tries to record on it (0, the usual case, records nothing)."""
        self._processed[user_id] = attempts

    def set_fields(self, user_id: ObjectId, fields: dict[str, Any]) -> None:
        """Set these top-level scalar fields on the user (a password hash, a retry's state)."""
        self._fields.setdefault(user_id, {}).update(fields)

    def pending_done(self, batch_id: ObjectId) -> None:
        """The batch's slow steps are all done: once the updates queued so far are
        acknowledged, delete its ``pending`` document."""
        self._pending_done[batch_id] = None

    def sealed_done(self, batch_id: ObjectId) -> None:
        """The batch's passwords are hashed (or there is nothing left to hash): once the
        updates queued so far are acknowledged, delete its ``sealed_passwords`` document."""
        self._sealed_done[batch_id] = None

    def clear(self) -> None:
        self._processed.clear()
        self._fields.clear()
        self._pending_done.clear()
        self._sealed_done.clear()

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
        # Not beside a write in flight: two flushes at once could delete a work document while
        # the update before it is still unsent, and a write left behind would outlive the
        # service (its txmongo timeout still armed).
        if self._looping is not None:
            looping, self._looping = self._looping, None
            await looping
        await self._guarded_flush()

    def _guarded_flush(self) -> Deferred[None]:
        d = ensureDeferred(self.flush())
        d.addCallbacks(
            lambda _: self._outage.succeeded(),
            lambda failure: self._outage.failed(failure.getErrorMessage()),
        )
        return d

    def _take_round(self) -> tuple[FinishRound, _Queued]:
        """The round to write, and what it was taken from (to put it back if it fails)."""
        taken = _Queued(self._processed, self._fields, self._pending_done, self._sealed_done)
        round = FinishRound(
            fields=dict(self._fields),
            pending_done=list(self._pending_done),
            sealed_done=list(self._sealed_done),
        )
        for user_id, attempts in self._processed.items():
            if user_id in round.fields:
                # Hashed (or retried) in the same round: one update of that user carries both.
                round.fields[user_id] = {**round.fields[user_id], **verified_fields(attempts)}
            else:
                round.processed.setdefault(attempts, []).append(user_id)
        self._processed, self._fields = {}, {}
        self._pending_done, self._sealed_done = {}, {}
        return round, taken

    def _put_back(self, taken: _Queued) -> None:
        for user_id, attempts in taken.processed.items():
            self._processed.setdefault(user_id, attempts)
        for user_id, fields in taken.fields.items():
            # Fields queued since the round was taken are newer: they win.
            self._fields[user_id] = {**fields, **self._fields.get(user_id, {})}
        for batch_id in taken.pending_done:
            self._pending_done.setdefault(batch_id, None)
        for batch_id in taken.sealed_done:
            self._sealed_done.setdefault(batch_id, None)

    async def flush(self) -> None:
        if not self.backlog:
            return
        round, taken = self._take_round()
        try:
            await self._store.apply_finishes(round, bson_now(self._clock.seconds()))
        except BaseException:
            self._put_back(taken)
            raise
        self.written += len(round.fields) + sum(len(ids) for ids in round.processed.values())
