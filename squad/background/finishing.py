"""Batched writes of finished background work, on their own database connection.

Each finished slow step is a user to mark ``processed``, each hashed password a field to set,
and each batch whose work is all done a document to delete. One at a time they would cost a
database round trip each and compete with sign-ups; here they are gathered for ``interval``
seconds and sent together on a separate connection, so sign-ups (on the main pool) never queue
behind them. The users verified in one round share one update (``_id: {$in: ...}``), so a round
costs the database about what a batch of sign-ups does. Every round sends everything queued: no
throttle, so finishing can never fall behind what is accepted while the database keeps up.
When the database is down the work simply waits in memory and goes out later.
One process writes a user's updates one round at a time, in order, so its slow step's result and
its password hash never overwrite each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from squad.runtime.logs import OutageLog
from squad.storage.documents import bson_now, verified_fields
from squad.storage.store import FinishRound, IStore, Passwords, SealedBatch

__all__ = ["FinishWriter"]

log = Logger()


@dataclass(frozen=True)
class _Queued:
    """What one round was taken from: the queues as they stood when it was taken."""

    processed: dict[ObjectId, int]
    fields: dict[ObjectId, dict[str, Any]]
    pending_done: dict[ObjectId, tuple[str, Passwords]]
    sealed_done: dict[ObjectId, bool]


class FinishWriter:
    """Gathers user updates and the work documents they finish; writes them in order."""

    def __init__(self, clock: IReactorTime, store: IStore, interval: float = 0.2) -> None:
        self._clock = clock
        self._store = store
        self._processed: dict[ObjectId, int] = {}
        self._fields: dict[ObjectId, dict[str, Any]] = {}
        # Batches whose slow steps are done: owner and passwords, for those to move.
        self._pending_done: dict[ObjectId, tuple[str, Passwords]] = {}
        # Batches hashed, and whether they were read from their pending document.
        self._sealed_done: dict[ObjectId, bool] = {}
        # Batches this writer moved to sealed_passwords, not hashed yet; and batches hashed
        # while still in pending, whose passwords must not move when their slow steps end.
        self._moved: set[ObjectId] = set()
        self._hashed_in_pending: set[ObjectId] = set()
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

    def processed(self, user_id: ObjectId, attempts: int) -> None:
        """Mark the user ``processed`` (its slow step succeeded after ``attempts`` tries)."""
        self._processed[user_id] = attempts

    def set_fields(self, user_id: ObjectId, fields: dict[str, Any]) -> None:
        self._fields.setdefault(user_id, {}).update(fields)

    def pending_done(self, batch_id: ObjectId, owner: str, passwords: Passwords) -> None:
        """The batch's slow steps are all done: once the updates queued so far are
        acknowledged, delete its ``pending`` document, first moving ``passwords`` (those it
        holds sealed) to ``sealed_passwords`` under ``owner`` unless they were hashed."""
        self._pending_done[batch_id] = (owner, passwords)

    def sealed_done(self, batch_id: ObjectId, in_pending: bool) -> None:
        """The batch's passwords are hashed (read from its ``pending`` document if
        ``in_pending``): once their updates are acknowledged, its sealed form goes."""
        self._sealed_done[batch_id] = in_pending

    def clear(self) -> None:
        self._processed.clear()
        self._fields.clear()
        self._pending_done.clear()
        self._sealed_done.clear()
        self._moved.clear()
        self._hashed_in_pending.clear()

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
        """The round to write, and what it was taken from (to settle it or put it back)."""
        taken = _Queued(self._processed, self._fields, self._pending_done, self._sealed_done)
        round = FinishRound(fields=dict(self._fields))
        for user_id, attempts in self._processed.items():
            if user_id in round.fields:
                # Hashed in the same round: one update of that user carries both.
                round.fields[user_id] = {**round.fields[user_id], **verified_fields(attempts)}
            else:
                round.processed.setdefault(attempts, []).append(user_id)
        hashed_in_pending = set(self._hashed_in_pending)
        for batch_id, in_pending in self._sealed_done.items():
            if in_pending and batch_id not in self._moved:
                hashed_in_pending.add(batch_id)  # its pending document goes without a move
            else:
                round.sealed_done.append(batch_id)
        for batch_id, (owner, passwords) in self._pending_done.items():
            round.pending_done.append(batch_id)
            if passwords and batch_id not in hashed_in_pending:
                round.moves.append((owner, SealedBatch(batch_id, passwords)))
        self._processed, self._fields = {}, {}
        self._pending_done, self._sealed_done = {}, {}
        return round, taken

    def _settle(self, round: FinishRound, taken: _Queued) -> None:
        """The round was acknowledged: remember what moved, forget what is gone."""
        for _, moved in round.moves:
            self._moved.add(moved.batch_id)
        for batch_id in round.sealed_done:
            self._moved.discard(batch_id)
        for batch_id, in_pending in taken.sealed_done.items():
            if in_pending and batch_id not in round.sealed_done:
                self._hashed_in_pending.add(batch_id)
        for batch_id in taken.pending_done:
            self._hashed_in_pending.discard(batch_id)

    def _put_back(self, taken: _Queued) -> None:
        for user_id, attempts in taken.processed.items():
            self._processed.setdefault(user_id, attempts)
        for user_id, fields in taken.fields.items():
            # Fields queued since the round was taken are newer: they win.
            self._fields[user_id] = {**fields, **self._fields.get(user_id, {})}
        for batch_id, done in taken.pending_done.items():
            self._pending_done.setdefault(batch_id, done)
        for batch_id, in_pending in taken.sealed_done.items():
            self._sealed_done.setdefault(batch_id, in_pending)

    async def flush(self) -> None:
        if not self.backlog:
            return
        round, taken = self._take_round()
        try:
            await self._store.apply_finishes(round, bson_now(self._clock.seconds()))
        except BaseException:
            self._put_back(taken)
            raise
        self._settle(round, taken)
        self.written += len(round.fields) + sum(len(ids) for ids in round.processed.values())
