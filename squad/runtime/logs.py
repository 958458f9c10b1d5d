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
