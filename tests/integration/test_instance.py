"""Instance identity: instances sharing a database say who they are in logs and metrics."""

from __future__ import annotations

import socket
from typing import Any

from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import provider

from tests.options import parse
from tests.support import start_squad


class InstanceNameOptionTests(SynchronousTestCase):
    def test_default_is_host_and_port(self) -> None:
        """Without a name, an instance is called after its host and the port it listens on,
        which tells apart several instances on one machine."""
        host = socket.gethostname()
        self.assertEqual(parse([])["instance-name"], f"{host}:9000")
        self.assertEqual(
            parse(["--port", "tcp:9100:interface=127.0.0.1"])["instance-name"], f"{host}:9100"
        )

    def test_environment_and_command_line(self) -> None:
        """SQUAD_INSTANCE names the instance; --instance-name beats it."""
        self.assertEqual(parse([], {"SQUAD_INSTANCE": "web-2"})["instance-name"], "web-2")
        self.assertEqual(
            parse(["--instance-name", "web-3"], {"SQUAD_INSTANCE": "web-2"})["instance-name"],
            "web-3",
        )

    def test_unusable_names_are_refused(self) -> None:
        """A name with spaces or quotes (it becomes a metric label) stops start-up with a
        reason."""
        for bad in ["", "two words", 'quote"d', "x" * 101]:
            with self.assertRaises(usage.UsageError) as caught:
                parse(["--instance-name", bad])
            self.assertIn("--instance-name", str(caught.exception))


class InstanceIdentityTests(TestCase):
    async def test_name_in_start_up_line_and_metrics(self) -> None:
        """The start-up log line states the instance's name, and GET /metrics carries it as
        squad_instance_info{squad_instance="<name>"} 1."""
        events: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: Any) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observe)
        try:
            squad = await start_squad(self, "--instance-name", "web-7")
        finally:
            globalLogPublisher.removeObserver(observe)
        settings = [
            event["settings"]
            for event in events
            if event.get("log_format", "").startswith("squad starting")
        ]
        self.assertEqual([found["instance-name"] for found in settings], ["web-7"])
        response = await squad.get("/metrics")
        text = (await response.content()).decode()
        self.assertIn('squad_instance_info{squad_instance="web-7"} 1.0', text)
