"""Logs: JSON lines on request, settings at start-up, no secrets."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from twisted.trial.unittest import SynchronousTestCase

from squad.background.outages import OutageLog
from squad.runtime.logs import (
    SettingsLog,
    json_observer,
    observer_from_environment,
)
from tests.options import parse


class JsonLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = os.environ.get("SQUAD_LOG_FORMAT")

        def restore() -> None:
            if previous is None:
                os.environ.pop("SQUAD_LOG_FORMAT", None)
            else:
                os.environ["SQUAD_LOG_FORMAT"] = previous

        self.addCleanup(restore)

    def test_json_observer_writes_one_json_object_per_line(self) -> None:
        """Each event becomes one line that parses as JSON, with the formatted fields."""
        stream = io.StringIO()
        logger = Logger(namespace="squad.test", observer=json_observer(stream))
        logger.info("stored {count} users", count=3)
        logger.warn("database slow")
        lines = [line for line in stream.getvalue().split("\x1e") if line.strip()]
        events = [json.loads(line) for line in lines]
        self.assertEqual([event["count"] for event in events if "count" in event], [3])
        self.assertEqual(len(events), 2)

    def test_workers_follow_the_json_choice(self) -> None:
        """Choosing the JSON logger makes worker processes (started later) log JSON too."""
        json_observer(io.StringIO())
        self.assertEqual(os.environ["SQUAD_LOG_FORMAT"], "json")
        stream = io.StringIO()
        Logger(observer=observer_from_environment(stream)).info("hello {who}", who="worker")
        self.assertIn('"who": "worker"', stream.getvalue())

    def test_settings_line_leaves_the_seal_key_out(self) -> None:
        """Each process's start-up line states its settings, never the seal key."""
        settings = parse([], {"SQUAD_SEAL_KEY": base64.b64encode(b"k" * 32).decode()}).settings
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        SettingsLog(settings, "worker").startService()
        (line,) = [formatEvent(event) for event in events if "squad starting" in formatEvent(event)]
        self.assertIn("squad starting (worker) with", line)
        self.assertIn("'port': 'tcp:9000'", line)
        self.assertNotIn("seal-key'", line)
        self.assertNotIn(repr(b"k" * 32), line)
        self.assertNotIn(base64.b64encode(b"k" * 32).decode(), line)


class QuietLogTests(SynchronousTestCase):
    def lines(self, emit: Callable[[Logger], None]) -> list[str]:
        stream = io.StringIO()
        observer = observer_from_environment(stream)
        emit(Logger(namespace="squad.test", observer=observer))
        emit(Logger(namespace="txmongo.connection._Connection", observer=observer))
        return stream.getvalue().splitlines()

    def test_library_chatter_and_debug_are_left_out_warnings_kept(self) -> None:
        """At the default level a log says neither txmongo's per-connection info lines nor
        anyone's debug lines; warnings, txmongo's included, are kept."""

        def emit(logger: Logger) -> None:
            logger.debug("debug line")
            logger.info("info line")
            logger.warn("warning line")

        lines = self.lines(emit)
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("[squad.test#info] info line", lines[0])
        self.assertIn("[squad.test#warn] warning line", lines[1])
        self.assertIn("[txmongo.connection._Connection#warn] warning line", lines[2])


class OutageLogTests(SynchronousTestCase):
    def test_an_outage_is_said_once_when_it_starts_and_once_when_it_ends(self) -> None:
        """However many attempts fail, an outage is one warning when it starts and one line
        when it ends, with its length and the number of failed attempts; attempts that
        succeed say nothing."""
        events: list[dict[str, Any]] = []
        clock = Clock()
        observer = cast(ILogObserver, events.append)
        outage = OutageLog(Logger(observer=observer), clock, "Writing finished work")
        outage.succeeded()
        for _ in range(25):
            outage.failed("the database did not answer")
            clock.advance(0.2)
        outage.succeeded()
        outage.succeeded()
        shown = [event for event in events if event["log_level"] != LogLevel.debug]
        self.assertEqual([event["log_level"] for event in shown], [LogLevel.warn, LogLevel.info])
        self.assertEqual(formatEvent(shown[0]).count("the database did not answer"), 1)
        self.assertEqual(
            formatEvent(shown[1]),
            "Writing finished work works again after 5.0 s and 25 failed attempts.",
        )
