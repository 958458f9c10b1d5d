"""Who holds which pending work: a heartbeat per process, and the take-over of the dead's work.

Instead of a lease on every pending document (one extra write per user, and racy on FerretDB),
each process renews one lease on itself: its heartbeat in ``processes``. The pending documents
name their owner. When a heartbeat is older than ``--lease-seconds``, any live process hands
that owner's work back to the pool, and whoever has room adopts it. A process that is stopped
gracefully releases its work at once, so nothing waits for the lease to lapse.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from squad.documents import bson_now
from squad.store import Store

__all__ = ["ProcessLease", "new_owner_id"]

log = Logger()


def new_owner_id() -> str:
    """Unique per process start, readable in the database: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ProcessLease(Service):
    """Renews this process's lease and hands the work of lapsed processes back to the pool."""

    def __init__(
        self,
        clock: IReactorTime,
        store: Store,
        owner: str,
        lease_seconds: float,
    ) -> None:
        self._clock = clock
        self._store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        # Renew several times per lease, so a few lost heartbeats do not make us look dead.
        self.interval = max(0.2, min(lease_seconds / 4, 5.0))
        self._refillers: list[Callable[[bool], Awaitable[None]]] = []
        self._last_look = float("-inf")
        self._flushes: int | None = None
        self._droppers: list[Callable[[float], None]] = []
        self._loop = LoopingCall(self._guarded_tick)
        self._loop.clock = clock

    def add_dropper(self, drop: Callable[[float], None]) -> None:
        """Called when another process ran DELETE /collections."""
        self._droppers.append(drop)

    def add_refiller(self, refill: Callable[[bool], Awaitable[None]]) -> None:
        """Called after each renewal with whether unowned work may be waiting: a consumer that
        has room adopts it."""
        self._refillers.append(refill)

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return ensureDeferred(self._release_own())

    async def _release_own(self) -> None:
        try:
            await self._store.release(self.owner)
        except Exception as error:
            log.warn(
                "Could not hand back pending work at shutdown ({error}); other processes take"
                " it over when this one's lease lapses.",
                error=error,
            )

    def _guarded_tick(self) -> Deferred[None]:
        # A failed round must not stop the loop: the database may just be restarting.
        d = ensureDeferred(self.tick())
        d.addErrback(
            lambda failure: log.warn("Lease round failed: {error}", error=failure.getErrorMessage())
        )
        return d

    async def tick(self) -> None:
        now = self._clock.seconds()
        await self._store.heartbeat(
            self.owner,
            bson_now(now + self.lease_seconds),
            {"pid": os.getpid(), "host": socket.gethostname()},
        )
        # Looking for unowned work means reading the whole pending collection on FerretDB (only
        # _id filters reach its SQL): do it when work was just released, and otherwise once per
        # lease period (for work that stopped processes handed back gracefully).
        generation, flushed_at = await self._store.last_flush()
        if self._flushes is not None and generation != self._flushes:
            # DELETE /collections ran (maybe in another process): drop the work held in memory
            # for users accepted before it; their documents are gone.
            moment = flushed_at.replace(tzinfo=UTC).timestamp()
            for drop in self._droppers:
                drop(moment)
        self._flushes = generation
        look = now - self._last_look >= self.lease_seconds
        for dead in await self._store.dead_owners(bson_now(now)):
            if dead != self.owner:
                log.info("Taking over the pending work of {owner}, whose lease lapsed.", owner=dead)
                await self._store.release(dead)
                look = True
        if look:
            self._last_look = now
        for refill in self._refillers:
            await refill(look)
