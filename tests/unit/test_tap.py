"""``twistd squad`` options: defaults, environment, command line, and refusals."""

from __future__ import annotations

import socket
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from squad.runtime.settings import Settings
from squad.tap import PARAMETERS, Options, makeService
from tests.options import KEY, parse


class OptionsTests(SynchronousTestCase):
    def test_contract_defaults(self) -> None:
        """With nothing set, every option takes the contract's default."""
        options = parse([])
        self.assertEqual(options["port"], "tcp:9000")
        self.assertEqual(options["mongo-uri"], "mongodb://127.0.0.1:27017")
        self.assertEqual(options["database"], "squad")
        self.assertEqual((options["slow-min"], options["slow-max"]), (5.0, 15.0))
        self.assertIsNone(options["verifier-url"])
        self.assertFalse(options["allow-flush"])
        self.assertEqual(options["lease-seconds"], 60.0)
        self.assertEqual(options["write-concern"], 1)
        self.assertGreaterEqual(options["workers"], 1)

    def test_environment_fills_in(self) -> None:
        """Environment variables set what the command line leaves out."""
        options = parse(
            [],
            {
                "SQUAD_PORT": "tcp:9100",
                "SQUAD_DATABASE": "other",
                "SQUAD_SLOW_MIN": "0.5",
                "SQUAD_SLOW_MAX": "1",
                "SQUAD_ALLOW_FLUSH": "1",
                "SQUAD_WORKERS": "3",
                "SQUAD_WRITE_CONCERN": "majority",
                "SQUAD_VERIFIER_URL": "http://127.0.0.1:8000/verify",
            },
        )
        self.assertEqual(options["port"], "tcp:9100")
        self.assertEqual(options["database"], "other")
        self.assertEqual((options["slow-min"], options["slow-max"]), (0.5, 1.0))
        self.assertTrue(options["allow-flush"])
        self.assertEqual(options["workers"], 3)
        self.assertEqual(options["write-concern"], "majority")
        self.assertEqual(options["verifier-url"], "http://127.0.0.1:8000/verify")

    def test_command_line_beats_environment(self) -> None:
        """A value on the command line wins over the same setting in the environment."""
        options = parse(
            ["--port", "tcp:9200", "--lease-seconds", "5"],
            {"SQUAD_PORT": "tcp:9100", "SQUAD_LEASE_SECONDS": "30"},
        )
        self.assertEqual(options["port"], "tcp:9200")
        self.assertEqual(options["lease-seconds"], 5.0)

    def test_bad_values_are_refused_with_a_reason(self) -> None:
        """Each bad value stops start-up with a one-line message naming the option."""
        cases = [
            (["--port", "nonsense:1"], "--port"),
            (["--mongo-uri", "http://x"], "--mongo-uri"),
            (["--database", "a/b"], "--database"),
            (["--workers", "0"], "--workers"),
            (["--workers", "many"], "--workers"),
            (["--slow-min", "-1"], "--slow-min"),
            (["--slow-max", "nan"], "--slow-max"),
            (["--slow-min", "9", "--slow-max", "2"], "--slow-min"),
            (["--verifier-url", "ftp://x"], "--verifier-url"),
            (["--lease-seconds", "0"], "--lease-seconds"),
            (["--write-concern", "?!"], "--write-concern"),
            (["--max-connections", "0"], "--max-connections"),
            (["--max-connections", "lots"], "--max-connections"),
            (["--request-timeout", "0"], "--request-timeout"),
            (["--request-timeout", "inf"], "--request-timeout"),
        ]
        for argv, name in cases:
            with self.subTest(argv=argv):
                error = self.assertRaises(usage.UsageError, parse, argv)
                self.assertIn(name, str(error))
                self.assertNotIn("\n", str(error))

    def test_connection_limits(self) -> None:
        """--max-connections (10,000 per worker) and --request-timeout (10 s) have defaults and
        environment twins."""
        options = parse([])
        self.assertEqual((options["max-connections"], options["request-timeout"]), (10_000, 10.0))
        options = parse(
            ["--request-timeout", "2.5"],
            {"SQUAD_MAX_CONNECTIONS": "500", "SQUAD_REQUEST_TIMEOUT": "7"},
        )
        self.assertEqual((options["max-connections"], options["request-timeout"]), (500, 2.5))

    def test_bad_seal_key_is_refused_without_echoing_it(self) -> None:
        """A malformed SQUAD_SEAL_KEY stops start-up with a one-line reason that hides the key."""
        error = self.assertRaises(usage.UsageError, parse, [], {"SQUAD_SEAL_KEY": "not-a-key!"})
        self.assertIn("--seal-key-file", str(error))
        self.assertNotIn("not-a-key!", str(error))

    def test_seal_key_file_is_created_private(self) -> None:
        """Without SQUAD_SEAL_KEY a key file is created, readable by its owner only."""
        path = self.mktemp() + "/seal.key"
        options = Options(environ={}, probe_port=lambda port: None)
        options.parseOptions(["--seal-key-file", path])
        self.assertEqual(len(options["seal-key"]), 32)
        import os
        import stat

        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_bad_environment_values_are_refused_too(self) -> None:
        """A bad value from the environment is checked like one from the command line."""
        error = self.assertRaises(usage.UsageError, parse, [], {"SQUAD_SLOW_MAX": "soon"})
        self.assertIn("--slow-max", str(error))


class SettingsTests(SynchronousTestCase):
    """``Options.settings``: every option once, typed, and the same in a worker."""

    def test_every_option_is_a_setting(self) -> None:
        """Each option of PARAMETERS and --allow-flush lands in the settings, converted."""
        options = parse(["--workers", "3", "--allow-flush", "--slow-min", "0.5"])
        settings = options.settings
        for name, *_ in PARAMETERS:
            self.assertEqual(getattr(settings, name.replace("-", "_")), options[name])
        self.assertEqual((settings.workers, settings.slow_min), (3, 0.5))
        self.assertTrue(settings.allow_flush)
        self.assertEqual(len(settings.seal_key), 32)

    def test_a_worker_gets_the_same_settings_without_the_key_in_its_environment(self) -> None:
        """The JSON a supervisor hands a worker round-trips every setting, and the seal key
        is loaded by the worker itself, never written into that JSON."""
        settings = parse(["--verifier-url", "http://127.0.0.1:1/v", "--workers", "2"]).settings
        text = settings.to_json()
        self.assertNotIn('seal_key"', text)
        self.assertNotIn(KEY, text)
        again = Settings.from_json(text, {"SQUAD_SEAL_KEY": KEY})
        self.assertEqual(again, settings)
        self.assertEqual(again.seal_key, settings.seal_key)

    def test_a_taken_port_stops_start_up_with_one_line(self) -> None:
        """A port something already listens on stops start-up with one line naming it, before
        any service is built."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        port = f"tcp:{listener.getsockname()[1]}:interface=127.0.0.1"
        options = Options(environ={"SQUAD_SEAL_KEY": KEY})
        error = self.assertRaises(SystemExit, options.parseOptions, ["--port", port])
        self.assertIn(f"cannot listen on {port}", str(error))
        self.assertNotIn("\n", str(error))


class ServiceChoiceTests(SynchronousTestCase):
    """``makeService``: which tree ``twistd squad`` runs."""

    def test_one_worker_on_tcp_is_supervised_so_it_can_reload(self) -> None:
        """--workers 1 on a tcp: port runs under the supervisor too, with SIGHUP's handler, so
        that a reload can replace its one worker."""
        from twisted.internet.testing import MemoryReactorClock

        from squad.runtime.supervisor import HangupReloads, WorkerSupervisor

        root: Any = makeService(parse(["--workers", "1"]), MemoryReactorClock())
        kinds = [type(child) for child in root]
        self.assertIn(WorkerSupervisor, kinds)
        self.assertIn(HangupReloads, kinds)

    def test_another_endpoint_runs_in_process_and_says_it_cannot_reload(self) -> None:
        """--workers 1 on a unix: socket runs one process tree here; SIGHUP then logs one line
        saying a reload needs a tcp: port, instead of ending the process."""
        from twisted.internet.testing import MemoryReactorClock
        from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
        from zope.interface import provider

        from squad.runtime.supervisor import HangupReloads, WorkerSupervisor

        options = parse(["--workers", "1", "--port", "unix:" + self.mktemp()])
        root: Any = makeService(options, MemoryReactorClock())
        kinds = [type(child) for child in root]
        self.assertNotIn(WorkerSupervisor, kinds)
        hangup = [child for child in root if isinstance(child, HangupReloads)]
        self.assertEqual(len(hangup), 1)
        logged: list[str] = []

        @provider(ILogObserver)
        def observer(event: Any) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        hangup[0].reload()
        self.assertEqual(len([line for line in logged if "needs a tcp: --port" in line]), 1)
