"""Group commit: concurrent sign-ups in one process share bulk writes.

One insert of 100 users costs FerretDB (and MongoDB) little more than one of a single
user, so under load we gather the sign-ups that arrive while earlier batches are in flight and
write them together. At low load a sign-up is written on the next reactor turn, alone: there is
no fixed wait to pay. Each request is answered as soon as the batch holding it is acknowledged,
and an error in one document fails only that request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

__all__ = ["BatchItem", "Expired", "GroupCommit"]


class BatchItem(Protocol):
    error: BaseException | None


Item = TypeVar("Item", bound=BatchItem)


class Expired(Exception):
    """The request gave up before its batch was sent, so it was not written at all."""


class _Waiting(Generic[Item]):
    __slots__ = ("deadline", "done", "item")

    def __init__(self, item: Item, deadline: float) -> None:
        self.item = item
        self.deadline = deadline
        self.done: Deferred[None] = Deferred()


class GroupCommit(Generic[Item]):
    """Gathers items into batches written by ``write``, at most ``concurrency`` at a time."""

    def __init__(
        self,
        clock: IReactorTime,
        write: Callable[[list[Item]], Awaitable[None]],
        *,
        max_batch: int = 100,
        concurrency: int = 4,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._clock = clock
        self._write = write
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._on_batch = on_batch
        self._queue: deque[_Waiting[Item]] = deque()
        self._in_flight = 0
        self._scheduled: IDelayedCall | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(self, item: Item, deadline: float) -> Deferred[None]:
        """Queue ``item``; the result fires once it is written, or fails with why it was not.

        ``deadline`` (on the clock) is when the requester stops waiting: an item still queued
        then is dropped unwritten, so nothing is saved behind a 503's back.
        """
        waiting = _Waiting(item, deadline)
        self._queue.append(waiting)
        self._schedule()
        return waiting.done

    def _schedule(self) -> None:
        # Flushing on the next reactor turn (not at once) lets the requests parsed in this turn
        # join the same batch.
        if self._scheduled is None and self._in_flight < self._concurrency and self._queue:
            self._scheduled = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        while self._queue and self._in_flight < self._concurrency:
            batch = self._take_batch()
            if batch:
                self._in_flight += 1
                self._on_batch(len(batch))
                ensureDeferred(self._send(batch))

    def _take_batch(self) -> list[_Waiting[Item]]:
        now = self._clock.seconds()
        batch: list[_Waiting[Item]] = []
        while self._queue and len(batch) < self._max_batch:
            waiting = self._queue.popleft()
            if waiting.deadline <= now:
                waiting.done.errback(Failure(Expired("the request gave up before it was written")))
            else:
                batch.append(waiting)
        return batch

    async def _send(self, batch: list[_Waiting[Item]]) -> None:
        try:
            await self._write([waiting.item for waiting in batch])
        except BaseException as error:
            failure = Failure(error)
            for waiting in batch:
                waiting.done.errback(failure)
        else:
            for waiting in batch:
                if waiting.item.error is None:
                    waiting.done.callback(None)
                else:
                    waiting.done.errback(Failure(waiting.item.error))
        finally:
            self._in_flight -= 1
            self._schedule()
