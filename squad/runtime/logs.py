"""Logging through ``twisted.logger``: readable text by default, JSON lines on request.

``twistd --logger squad.logs.json_observer squad …`` (or ``SQUAD_LOG_FORMAT=json``, which the
worker processes follow too) writes one JSON object per line for log shippers. squad logs no
request bodies and no access lines; each process's start-up line states its settings, the seal
key left out.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    InvalidLogLevelError,
    LogEvent,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    jsonFileLogObserver,
    textFileLogObserver,
)
from zope.interface import implementer

if TYPE_CHECKING:
    from squad.runtime.settings import Settings

__all__ = [
    "OutageLog",
    "SettingsLog",
    "json_observer",
    "observer_from_environment",
    "quiet",
]

log = Logger()


@implementer(ILogFilterPredicate)
class _NoChatter:
    """txmongo's connection factories say "Starting factory" for every pool connection at start
    and at every reconnection: noise at the default level, where a start is one line."""

    def __call__(self, event: LogEvent) -> Any:  # a PredicateResult constant (untyped)
        namespace = str(event.get("log_namespace", ""))
        level = event.get("log_level", LogLevel.info)
        if namespace.startswith("txmongo.") and level < LogLevel.warn:
            return PredicateResult.no
        return PredicateResult.maybe


def quiet(observer: ILogObserver) -> ILogObserver:
    """``observer`` at the info level, without the libraries' routine chatter (see
    ``_NoChatter``); ``SQUAD_LOG_LEVEL=debug`` shows everything."""
    try:
        level = LogLevel.levelWithName(os.environ.get("SQUAD_LOG_LEVEL", "info").lower())
    except InvalidLogLevelError:
        level = LogLevel.info
    return FilteringLogObserver(
        observer, [_NoChatter(), LogLevelFilterPredicate(defaultLogLevel=level)]
    )


def json_observer(stream: IO[str] | None = None) -> ILogObserver:
    """A ``--logger`` for twistd: JSON lines on standard output (workers started later follow)."""
    os.environ["SQUAD_LOG_FORMAT"] = "json"
    return quiet(jsonFileLogObserver(stream or sys.stdout))


def observer_from_environment(stream: IO[str] | None = None) -> ILogObserver:
    """What a worker process logs with: JSON when ``SQUAD_LOG_FORMAT=json``, else text."""
    if os.environ.get("SQUAD_LOG_FORMAT", "").lower() == "json":
        return json_observer(stream)
    return quiet(textFileLogObserver(stream or sys.stdout))


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


class SettingsLog(Service):
    """Says once, at start, what this process runs with: one line per process."""

    def __init__(self, settings: Settings, role: str) -> None:
        self._settings = settings
        self._role = role

    def startService(self) -> None:
        super().startService()
        # Keyed by option name, as an operator typed them.
        options = {name.replace("_", "-"): value for name, value in self._settings.public().items()}
        log.info("squad starting ({role}) with {settings}", role=self._role, settings=options)
