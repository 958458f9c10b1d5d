"""Request deadlines without a timer per request.

``Deferred.addTimeout`` schedules one reactor timer per request, and at thousands of requests a
second the timer heap churns (docs/performance.md has the profile). Every sign-up gets the same
deadline length, so deadlines expire in arrival order: one queue and one coarse tick (every
``resolution`` seconds, only while anything is being watched) cancel the late ones. A cancelled
watch fails with ``TimeoutError``.

:data:`REQUEST_DEADLINE_SECONDS` is the other deadline of a request: how long its client may
take to send it, enforced by :class:`squad.http.site.SquadSite`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

__all__ = ["MAX_CONNECTIONS", "REQUEST_DEADLINE_SECONDS", "Deadlines"]

T = TypeVar("T")

# How long a client may take to send one request, headers and body, from the first time it is
# seen arriving: docs/security.md ("Slow clients") explains why 10 s.
REQUEST_DEADLINE_SECONDS = 10.0

# Open connections one worker process holds at most: ten times what the benchmark sweep opens
# across all workers, within the file-descriptor limit (raised at start, see fit_connection_cap).
# Here, beside the other default of the HTTP edge, because squad.tap reads both and this
# module, unlike the site, does not import the reactor.
MAX_CONNECTIONS = 10_000


class _Watch:
    __slots__ = ("deadline", "deferred", "expired")

    def __init__(self, deadline: float, deferred: Deferred[Any]) -> None:
        self.deadline = deadline
        self.deferred = deferred
        self.expired = False


class Deadlines:
    """Cancels watched Deferreds that are still waiting when their deadline passes."""

    def __init__(self, clock: IReactorTime, resolution: float = 0.05) -> None:
        self._clock = clock
        self._resolution = resolution
        self._watches: deque[_Watch] = deque()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def watch(self, deferred: Deferred[T], seconds: float) -> Deferred[T]:
        """``deferred`` fails with ``TimeoutError`` if it has no result within ``seconds``
        (give every watch the same length, or late ones wait for earlier ones' turn)."""
        watch = _Watch(self._clock.seconds() + seconds, deferred)

        def convert(failure: Failure) -> Failure:
            if watch.expired and failure.check(CancelledError):
                return Failure(TimeoutError(seconds, "Deadline"))
            return failure

        deferred.addErrback(convert)
        self._watches.append(watch)
        if not self._loop.running:
            self._loop.start(self._resolution, now=False)
        return deferred

    def stop(self) -> None:
        """Stop ticking (service shutdown); what is still watched is left to its own fate."""
        self._watches.clear()
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self._clock.seconds()
        watches = self._watches
        while watches and (watches[0].deferred.called or watches[0].deadline <= now):
            watch = watches.popleft()
            if not watch.deferred.called:
                watch.expired = True
                watch.deferred.cancel()
        if not watches:
            self._loop.stop()
