"""Retry pacing and a circuit breaker for the slow step's calls to the verifier.

Both take the clock as a parameter (``IReactorTime``), so tests drive them with ``Clock``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

__all__ = ["Backoff", "CircuitBreaker", "CircuitOpen"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped: retries go on forever, but never in a storm.

    Each delay is drawn between half the exponential bound and the bound, which spreads the
    retries of thousands of users that failed at the same moment, so a recovering verifier is
    not hit all at once, and still makes every wait grow with the attempts.
    """

    base: float = 1.0
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def bound(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (1-based)."""
        return float(min(self.cap, self.base * 2.0 ** min(attempt - 1, 30)))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(self.bound(attempt) / 2, self.bound(attempt))


class CircuitOpen(Exception):
    """The verifier failed repeatedly; calls are refused locally until the cool-down ends."""


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown``.

    While open, a call costs nothing: no socket, no timeout to wait for. In half-open one trial
    call goes through; its success closes the circuit, its failure opens it again.
    """

    def __init__(self, clock: IReactorTime, threshold: int = 5, cooldown: float = 10.0) -> None:
        self._clock = clock
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock.seconds() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise ``CircuitOpen`` when a call must not be made now."""
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise CircuitOpen("the verifier is failing; not calling it for a while")
        if state == "half-open":
            self._trial_running = True

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def abandoned(self) -> None:
        """A call was cancelled by us: no verdict, but a half-open trial slot is free again."""
        self._trial_running = False

    def failed(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock.seconds()
