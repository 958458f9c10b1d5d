"""Logging through ``twisted.logger``: readable text by default, JSON lines on request.

``twistd --logger squad.logs.json_observer squad …`` (or ``SQUAD_LOG_FORMAT=json``, which the
worker processes follow too) writes one JSON object per line for log shippers. squad logs no
request bodies and no access lines; the start-up line states the effective settings with the
secrets left out.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from twisted.logger import (
    ILogObserver,
    Logger,
    jsonFileLogObserver,
    textFileLogObserver,
)

__all__ = ["describe_settings", "json_observer", "observer_from_environment"]

log = Logger()

# Never written to a log, whatever the option's value.
SECRET_SETTINGS = frozenset({"seal-key"})


def json_observer(stream: IO[str] | None = None) -> ILogObserver:
    """A ``--logger`` for twistd: JSON lines on standard output (workers started later follow)."""
    os.environ["SQUAD_LOG_FORMAT"] = "json"
    return jsonFileLogObserver(stream or sys.stdout)


def observer_from_environment(stream: IO[str] | None = None) -> ILogObserver:
    """What a worker process logs with: JSON when ``SQUAD_LOG_FORMAT=json``, else text."""
    if os.environ.get("SQUAD_LOG_FORMAT", "").lower() == "json":
        return json_observer(stream)
    return textFileLogObserver(stream or sys.stdout)


def describe_settings(config: Any, names: list[str]) -> dict[str, object]:
    """The effective settings for the start-up line, secrets left out."""
    return {name: config[name] for name in names if name not in SECRET_SETTINGS}
