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


class HttpVerification:
    """Asks the verifier at ``url``: a 2xx answer to ``POST {"id": ...}`` means verified."""

    def __init__(
        self,
        http: Any,
        url: str,
        breaker: CircuitBreaker,
        timeout: float = 30.0,
    ) -> None:
        # ``http`` is a treq-like client (treq itself, an HTTPClient, or StubTreq in tests).
        self._http = http
        self._url = url
        self._breaker = breaker
        self._timeout = timeout

    async def verify(self, user_id: ObjectId) -> None:
        self._breaker.before_call()
        try:
            response = await self._http.post(
                self._url, json={"id": str(user_id)}, timeout=self._timeout
            )
            # Read the body so the persistent connection goes back to the pool.
            await response.content()
        except Exception as error:
            self._breaker.failed()
            raise VerificationFailed(f"the verifier could not be reached: {error}") from error
        if not 200 <= response.code < 300:
            self._breaker.failed()
            raise VerificationFailed(f"the verifier answered HTTP {response.code}")
        self._breaker.succeeded()
