"""Who holds which pending work: a heartbeat per process, and the take-over of the dead's work.

Instead of a lease on every pending document (one extra write per user, and racy on FerretDB),
each process renews one lease on itself: its heartbeat in ``processes``. The pending documents
name their owner. When a heartbeat is older than ``--lease-seconds``, every live process with
room adopts that owner's work straight from it, in small rounds, and the dead process is
forgotten once none is left. A process that is stopped gracefully marks its own heartbeat
lapsed, one write, so its work is taken over at the next round instead of after the lease.

Adoption runs beside the heartbeat, never in front of it: a long take-over must not delay the
renewal and make this process look dead in turn.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from squad.background.outages import OutageLog
from squad.storage.documents import bson_now
from squad.storage.store import UNOWNED, IStore

__all__ = ["ProcessLease", "new_owner_id"]

log = Logger()

# Without any sign of unowned work, look for it anyway this many lease periods apart.
UNOWNED_SAFETY_LEASES = 10


def new_owner_id() -> str:
    """Unique per process start, readable in the database: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ProcessLease(MultiService):
    """Renews this process's lease and hands the work of lapsed processes back to the pool."""

    def __init__(
        self,
        clock: IReactorTime,
        store: IStore,
        owner: str,
        lease_seconds: float,
        *,
        refillers: Sequence[Callable[[Sequence[str]], Awaitable[bool]]] = (),
        droppers: Sequence[Callable[[float], None]] = (),
        unowned_written_at: Callable[[], float | None] = lambda: None,
        on_live: Callable[[Sequence[str]], None] = lambda owners: None,
    ) -> None:
        """``refillers`` are called after each renewal with the owners whose work may be taken
        (dead processes, and ``UNOWNED`` once per lease): each adopts what it has room for and
        answers whether it saw all of it. ``droppers`` are called when another process ran
        DELETE /collections. ``unowned_written_at`` says when this process last stored unowned
        work (None: never); the heartbeat carries it, so that other processes look for it.
        ``on_live`` hears, after each renewal, which processes are alive (this one included)."""
        self._clock = clock
        self._store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        # Renew several times per lease, so a few lost heartbeats do not make us look dead.
        self.interval = max(0.2, min(lease_seconds / 4, 5.0))
        self._refillers = tuple(refillers)
        self._refilling: Deferred[None] | None = None
        self._announced: set[str] = set()
        self._last_look = float("-inf")
        # Whether the last look for unowned work ran out of room before seeing all of it.
        self._unowned_left = False
        self._unowned_written_at = unowned_written_at
        self._flushes: int | None = None
        self._droppers = tuple(droppers)
        self._on_live = on_live
        super().__init__()
        # Its stop waits for a renewal in flight, which would otherwise land after the
        # hand-over below and undo it (the work would wait for the lease to lapse).
        renewing = TimerService(self.interval, self._guarded_tick)
        renewing.clock = clock
        renewing.setServiceParent(self)
        self._outage = OutageLog(log, clock, "Renewing this process's lease")
        #: The processes alive at the last renewal (this one included), sorted.
        self.live_owners: list[str] = [owner]

    def stopService(self) -> Deferred[None]:
        return ensureDeferred(self._hand_over())

    async def _hand_over(self) -> None:
        if self.running:
            await super().stopService()
        if self._refilling is not None:
            # The slow work stopped first, so its adoption ends after the current round.
            await self._refilling
        try:
            await self._store.mark_stopped(self.owner, self._unowned_mark())
        except Exception as error:
            log.warn(
                "Could not hand pending work over at shutdown ({error}); other processes take"
                " it over when this one's lease lapses.",
                error=error,
            )

    def _guarded_tick(self) -> Deferred[None]:
        # A failed round must not stop the loop: the database may just be restarting.
        d = ensureDeferred(self.tick())
        d.addCallbacks(
            lambda _: self._outage.succeeded(),
            lambda failure: self._outage.failed(failure.getErrorMessage()),
        )
        return d

    def _unowned_mark(self) -> datetime | None:
        written_at = self._unowned_written_at()
        return None if written_at is None else bson_now(written_at)

    async def tick(self) -> None:
        now = self._clock.seconds()
        about: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        mark = self._unowned_mark()
        if mark is not None:
            about["unowned_at"] = mark
        await self._store.heartbeat(self.owner, bson_now(now + self.lease_seconds), about)
        generation, flushed_at = await self._store.last_flush()
        if self._flushes is not None and generation != self._flushes:
            # DELETE /collections ran (maybe in another process): drop the work held in memory
            # for users accepted before it; their documents are gone.
            moment = flushed_at.replace(tzinfo=UTC).timestamp()
            for drop in self._droppers:
                drop(moment)
        self._flushes = generation
        view = await self._store.lease_view(bson_now(now))
        self.live_owners = sorted({*view.live, self.owner})
        self._on_live(self.live_owners)
        unowned_mark = view.unowned_at
        dead = [owner for owner in view.dead if owner != self.owner]
        for owner in dead:
            if owner not in self._announced:
                self._announced.add(owner)
                log.info(
                    "Taking over the pending work of {owner}, whose lease lapsed.", owner=owner
                )
        if self._refilling is not None:
            return  # the last round's adoption is still going; it carries on by itself
        owners = list(dead)
        if self._should_look_for_unowned(now, unowned_mark):
            self._last_look = now
            owners.append(UNOWNED)
        # Not awaited: the next renewal must not wait for a long take-over.
        refilling = ensureDeferred(self._refill(owners, dead))
        if not refilling.called:
            self._refilling = refilling
            refilling.addBoth(self._refilled)

    def _refilled(self, result: object) -> None:
        self._refilling = None

    def _should_look_for_unowned(self, now: float, mark: datetime | None) -> bool:
        """Whether this round looks for unowned work (other processes' overflow).

        On FerretDB that look reads the whole ``pending`` collection (only ``_id`` filters
        reach its SQL), seconds under load (docs/performance.md, "Looking for unowned work").
        So at most once per lease period, and only at start-up (work left from before), when
        some process said it stored unowned work since our last look, when the last look ran
        out of room, or as a safety net every UNOWNED_SAFETY_LEASES lease periods (a process
        that overflowed and died before its next heartbeat).
        """
        since = now - self._last_look
        if since < self.lease_seconds:
            return False
        if self._last_look == float("-inf") or self._unowned_left:
            return True
        if since >= UNOWNED_SAFETY_LEASES * self.lease_seconds:
            return True
        if mark is None:
            return False
        # Marks come from other machines' clocks: a few heartbeats of slack.
        return mark.replace(tzinfo=UTC).timestamp() >= self._last_look - 2 * self.interval

    async def _refill(self, owners: list[str], dead: list[str]) -> None:
        try:
            seen_all = True
            for refill in self._refillers:
                seen_all = await refill(owners) and seen_all
            if UNOWNED in owners:
                self._unowned_left = not seen_all
            if seen_all and self._refillers:
                for owner in dead:
                    await self._store.forget_process(owner)
                    self._announced.discard(owner)
        except Exception as error:
            log.warn("Taking over pending work failed: {error}", error=error)
