"""Logs: JSON lines on request, settings at start-up, no secrets."""

from __future__ import annotations

import io
import json
import os

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from squad.logs import describe_settings, json_observer, observer_from_environment


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

    def test_settings_line_leaves_secrets_out(self) -> None:
        """The start-up settings never carry the seal key."""
        config = {"port": "tcp:9000", "seal-key": b"\x00" * 32, "database": "squad"}
        described = describe_settings(config, ["port", "seal-key", "database"])
        self.assertEqual(described, {"port": "tcp:9000", "database": "squad"})
        self.assertNotIn("seal-key", json.dumps(described))
