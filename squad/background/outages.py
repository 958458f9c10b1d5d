"""Saying in the log that a background task's database writes fail, once when they start to and
once when they work again, instead of a line per attempt."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["OutageLog"]


class OutageLog:
    """Says once that a database-backed task is failing and once that it works again, with
    how long and how many attempts failed; the attempts in between go to debug. Without it a
    worker would print a line per attempt, several a second, for as long as an outage lasts."""

    def __init__(self, logger: Logger, clock: IReactorTime, what: str) -> None:
        self._log = logger
        self._clock = clock
        self._what = what
        self._since: float | None = None
        self._failures = 0

    def failed(self, error: str) -> None:
        self._failures += 1
        if self._since is None:
            self._since = self._clock.seconds()
            self._log.warn(
                "{what} failed ({error}); retrying, and saying so once it works again.",
                what=self._what,
                error=error,
            )
        else:
            self._log.debug("{what} failed again: {error}", what=self._what, error=error)

    def succeeded(self) -> None:
        if self._since is None:
            return
        self._log.info(
            "{what} works again after {seconds:.1f} s and {failures} failed attempts.",
            what=self._what,
            seconds=self._clock.seconds() - self._since,
            failures=self._failures,
        )
        self._since = None
        self._failures = 0
