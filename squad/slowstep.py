"""The slow step itself (the seed's ``somethingSlow``): verifying a new user.

Two implementations of one small interface:

- ``StandInVerification`` waits a random time on the reactor's clock, like the seed's stand-in.
  Thousands of pending users cost thousands of timers, not threads or sockets.
- ``HttpVerification`` POSTs the user's id to a verifier service with treq, with a timeout per
  call, a bounded persistent connection pool and a circuit breaker.

Scheduling, retries and durability live in ``squad.slowwork``.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from bson import ObjectId
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from squad.resilience import CircuitBreaker

__all__ = ["HttpVerification", "StandInVerification", "Verification", "VerificationFailed"]


class VerificationFailed(Exception):
    """The verifier did not confirm the user this time; the slow step will retry."""


class Verification(Protocol):
    async def verify(self, user_id: ObjectId) -> None:
        """Return once the user is verified; raise to have the attempt retried later."""


class StandInVerification:
    """Waits between ``minimum`` and ``maximum`` seconds, then succeeds."""

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

    async def verify(self, user_id: ObjectId) -> None:
        await deferLater(self._clock, self._rng.uniform(self._minimum, self._maximum))


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
