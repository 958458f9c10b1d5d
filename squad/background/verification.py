"""The slow step itself (the original service's ``somethingSlow``): verifying a new user.

Two implementations of one small interface:

- ``StandInVerification`` waits a random time on the reactor's clock, like the original
  service's stand-in. Thousands of pending users cost one small Deferred each in shared timer
  slots, not threads, sockets or a timer each.
- ``HttpVerification`` POSTs the user's id to a verifier service with treq, with a timeout per
  call, a bounded persistent connection pool and a circuit breaker.

Scheduling, retries and durability live in ``squad.background.slow_step``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Awaitable
from typing import Any, Protocol

from bson import ObjectId
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from squad.background.resilience import CircuitBreaker

__all__ = ["HttpVerification", "StandInVerification", "Verification", "VerificationFailed"]


class VerificationFailed(Exception):
    """The verifier did not confirm the user this time; the slow step will retry."""


class Verification(Protocol):
    def verify(self, user_id: ObjectId) -> Awaitable[None]:
        """Fire once the user is verified; fail to have the attempt retried later."""


# The stand-in's timers share slots of this many seconds: one reactor timer per slot instead of
# one per pending user. Each wait still ends no earlier than drawn, and at most this much later.
TIMER_SLOT_SECONDS = 0.05


class _Slot:
    __slots__ = ("fire_at", "waits")

    def __init__(self, fire_at: float) -> None:
        self.fire_at = fire_at
        self.waits: list[Deferred[None]] = []


class StandInVerification:
    """Waits between ``minimum`` and ``maximum`` seconds, then succeeds.

    Thousands of users wait at once (a 5-15 s step at a thousand sign-ups a second), so a wait
    costs one Deferred in a slot, not a timer, a coroutine and their closures each: tens of
    thousands of such objects make Python's full garbage collections pause the reactor for
    hundreds of milliseconds (docs/performance.md, "Garbage collection pauses").
    """

    def __init__(
        self,
        clock: IReactorTime,
        minimum: float,
        maximum: float,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._minimum = minimum
        self._maximum = maximum
        self._rng = rng or random.Random()
        self._slots: dict[int, _Slot] = {}
        self._order: list[int] = []  # heap of slot numbers
        self._timer: IDelayedCall | None = None
        self._timer_at = 0.0
        self._live = 0
        # One bound method for every wait (a new one per wait would be one more object each).
        self._cancel = self._cancelled

    @property
    def waiting(self) -> int:
        """Stand-in steps in progress."""
        return self._live

    def verify(self, user_id: ObjectId) -> Deferred[None]:
        wait = self._rng.uniform(self._minimum, self._maximum)
        done: Deferred[None] = Deferred(self._cancel)
        if wait <= 0:
            done.callback(None)
            return done
        fire_at = self._clock.seconds() + wait
        number = int(fire_at // TIMER_SLOT_SECONDS)
        slot = self._slots.get(number)
        if slot is None:
            slot = self._slots[number] = _Slot(fire_at)
            heapq.heappush(self._order, number)
        elif fire_at > slot.fire_at:
            slot.fire_at = fire_at
        slot.waits.append(done)
        self._live += 1
        self._arm()
        return done

    def _arm(self) -> None:
        first = self._order[0]
        fire_at = self._slots[first].fire_at
        if self._timer is not None:
            if self._timer_at == fire_at:
                return
            self._timer.cancel()
        self._timer_at = fire_at
        self._timer = self._clock.callLater(max(0.0, fire_at - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        # A hair of slack: the timer was set as a difference of floats.
        now = self._clock.seconds() + 1e-9
        while self._order and self._slots[self._order[0]].fire_at <= now:
            slot = self._slots.pop(heapq.heappop(self._order))
            for done in slot.waits:
                if not done.called:
                    self._live -= 1
                    done.callback(None)
        if self._order:
            self._arm()

    def _cancelled(self, done: Deferred[None]) -> None:
        # The Deferred stays in its slot (finding it there would cost a search) and is skipped
        # when the slot fires; once nothing waits any more, no timer is left behind.
        self._live -= 1
        if self._live == 0:
            self._slots.clear()
            self._order.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class _VerifierTimeout(Exception):
    pass


def _timed_out(result: object, timeout: float) -> None:
    raise _VerifierTimeout(f"no answer within {timeout:g} s")


def _is_cancellation(error: BaseException) -> bool:
    """treq reports a cancelled request as a failure wrapping CancelledError."""
    if isinstance(error, CancelledError):
        return True
    reasons = getattr(error, "reasons", None) or []
    return any(getattr(reason, "check", lambda _: False)(CancelledError) for reason in reasons)


class HttpVerification:
    """Asks the verifier at ``url``: a 2xx answer to ``POST {"id": ...}`` means verified."""

    def __init__(
        self,
        http: Any,
        url: str,
        breaker: CircuitBreaker,
        clock: IReactorTime,
        timeout: float = 30.0,
    ) -> None:
        self._clock = clock
        # ``http`` is a treq-like client (treq itself, an HTTPClient, or StubTreq in tests).
        self._http = http
        self._url = url
        self._breaker = breaker
        self._timeout = timeout

    async def verify(self, user_id: ObjectId) -> None:
        self._breaker.before_call()
        try:
            # Our own timer on our clock (not treq's): a timeout must read as a timeout, and a
            # cancellation by us (shutdown, DELETE /collections) as a cancellation.
            call = ensureDeferred(self._call(user_id))
            call.addTimeout(self._timeout, self._clock, onTimeoutCancel=_timed_out)
            response = await call
        except CancelledError:
            # Stopped by us (shutdown, DELETE /collections): says nothing about the verifier.
            self._breaker.abandoned()
            raise
        except Exception as error:
            if _is_cancellation(error):
                self._breaker.abandoned()
                raise CancelledError() from error
            self._breaker.failed()
            raise VerificationFailed(f"the verifier could not be reached: {error}") from error
        if not 200 <= response.code < 300:
            self._breaker.failed()
            raise VerificationFailed(f"the verifier answered HTTP {response.code}")
        self._breaker.succeeded()

    async def _call(self, user_id: ObjectId) -> Any:
        response = await self._http.post(self._url, json={"id": str(user_id)})
        # Read the body so the persistent connection goes back to the pool.
        await response.content()
        return response
