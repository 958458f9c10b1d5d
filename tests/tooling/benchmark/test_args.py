"""The command line of ./bin/benchmark: arguments, durations and the environment it reads."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from benchmark.args import (
    DEFAULT_URL,
    SWEEP_LEVELS,
    UsageError,
    format_duration,
    help_text,
    parse_arguments,
    parse_duration,
    parse_levels,
)
from benchmark.sweep.targets import TargetContext, select_targets


class DurationTests(SynchronousTestCase):
    """Durations are typed the way the original challenge's tool took them."""

    def test_bare_number_is_seconds(self) -> None:
        """A bare number is seconds: ``45`` is 45 s."""
        self.assertEqual(parse_duration("45"), 45.0)

    def test_units(self) -> None:
        """``s``, ``m``, ``h`` and ``ms`` scale the number; fractions are allowed."""
        self.assertEqual(parse_duration("30s"), 30.0)
        self.assertEqual(parse_duration("5s"), 5.0)
        self.assertEqual(parse_duration("2m"), 120.0)
        self.assertEqual(parse_duration("1h"), 3600.0)
        self.assertEqual(parse_duration("1.5m"), 90.0)
        self.assertEqual(parse_duration("500ms"), 0.5)

    def test_combined_units_and_case(self) -> None:
        """Parts add up (``1m30s``), and case and surrounding spaces do not matter."""
        self.assertEqual(parse_duration("1m30s"), 90.0)
        self.assertEqual(parse_duration(" 2M "), 120.0)

    def test_rejects_garbage(self) -> None:
        """Anything that is not a duration is refused with a message that shows the forms."""
        for text in ("", "s", "abc", "10x", "5 s s", "-5s", "1m-3s", "m30"):
            with self.assertRaises(UsageError, msg=text) as caught:
                parse_duration(text)
            self.assertIn("30s", str(caught.exception))

    def test_rejects_zero(self) -> None:
        """A zero duration would measure nothing: refused."""
        self.assertRaises(UsageError, parse_duration, "0")
        self.assertRaises(UsageError, parse_duration, "0s")

    def test_format_round_trips(self) -> None:
        """format_duration writes what a person would type, and parse_duration reads it back."""
        for seconds, text in ((45.0, "45s"), (120.0, "2m"), (90.0, "1m30s"), (2.5, "2.5s")):
            self.assertEqual(format_duration(seconds), text)
            self.assertEqual(parse_duration(text), seconds)


class ArgumentTests(SynchronousTestCase):
    """Positional arguments, flags and the environment."""

    def test_defaults_are_the_seeds(self) -> None:
        """No arguments: 25 connections for 45 s against http://localhost:9000, no sweep."""
        settings = parse_arguments([], {})
        self.assertEqual(settings.connections, 25)
        self.assertEqual(settings.duration, 45.0)
        self.assertEqual(settings.url, DEFAULT_URL)
        self.assertFalse(settings.sweep)
        self.assertFalse(settings.drain)
        self.assertEqual(settings.mongo_uri, "mongodb://127.0.0.1:27017")
        self.assertEqual(settings.database, "squad")

    def test_connections_and_duration(self) -> None:
        """``1000 30s`` is 1000 connections for 30 s; ``50`` alone keeps the default 45 s."""
        settings = parse_arguments(["1000", "30s"], {})
        self.assertEqual((settings.connections, settings.duration), (1000, 30.0))
        settings = parse_arguments(["50"], {})
        self.assertEqual((settings.connections, settings.duration), (50, 45.0))

    def test_service_pid(self) -> None:
        """``SQUAD_PID`` names the service's process; anything but digits leaves it to the port."""
        self.assertEqual(parse_arguments([], {"SQUAD_PID": "4321"}).service_pid, 4321)
        for text in ("", "abc", "-5"):
            self.assertIsNone(parse_arguments([], {"SQUAD_PID": text}).service_pid, text)
        self.assertIsNone(parse_arguments([], {}).service_pid)

    def test_bad_connections(self) -> None:
        """Connections must be a whole number of at least 1."""
        for argv in (["5s"], ["0"], ["2.5"], ["many", "5s"]):
            self.assertRaises(UsageError, parse_arguments, argv, {})

    def test_too_many_arguments(self) -> None:
        """A third positional argument is a mistake, not silently ignored."""
        self.assertRaises(UsageError, parse_arguments, ["25", "5s", "extra"], {})

    def test_unknown_option(self) -> None:
        """An unknown option raises UsageError (no exit from inside the parser)."""
        self.assertRaises(UsageError, parse_arguments, ["--fast"], {})

    def test_drain_anywhere(self) -> None:
        """``--drain`` may come before or after the positional arguments."""
        self.assertTrue(parse_arguments(["--drain", "50", "5s"], {}).drain)
        settings = parse_arguments(["50", "5s", "--drain"], {})
        self.assertTrue(settings.drain)
        self.assertEqual(settings.connections, 50)

    def test_sweep_default_duration(self) -> None:
        """``--sweep`` alone runs the five levels for 30 s each."""
        settings = parse_arguments(["--sweep"], {})
        self.assertTrue(settings.sweep)
        self.assertEqual(settings.duration, 30.0)
        self.assertEqual(settings.levels, SWEEP_LEVELS)
        self.assertEqual(SWEEP_LEVELS, (25, 50, 100, 500, 1000))
        self.assertIsNone(settings.targets)

    def test_sweep_with_duration_and_drain(self) -> None:
        """``--sweep 5s --drain`` and ``--sweep=2m`` take the duration given."""
        settings = parse_arguments(["--sweep", "5s", "--drain"], {})
        self.assertEqual((settings.sweep, settings.duration, settings.drain), (True, 5.0, True))
        self.assertEqual(parse_arguments(["--sweep=2m"], {}).duration, 120.0)

    def test_sweep_refuses_connections(self) -> None:
        """A sweep chooses its own levels: a connection count with it is explained, refused."""
        with self.assertRaises(UsageError) as caught:
            parse_arguments(["--sweep", "5s", "50"], {})
        self.assertIn("SWEEP_LEVELS", str(caught.exception))

    def test_url_from_environment(self) -> None:
        """``URL`` picks the service; a trailing slash is dropped; non-HTTP URLs are refused."""
        settings = parse_arguments([], {"URL": "http://127.0.0.1:9100/"})
        self.assertEqual(settings.url, "http://127.0.0.1:9100")
        self.assertRaises(UsageError, parse_arguments, [], {"URL": "localhost:9000"})
        self.assertRaises(UsageError, parse_arguments, [], {"URL": "ftp://x"})

    def test_database_from_environment(self) -> None:
        """``SQUAD_MONGO_URI`` and ``SQUAD_DATABASE`` say where the nothing-lost check reads."""
        settings = parse_arguments(
            [], {"SQUAD_MONGO_URI": "mongodb://127.0.0.1:27018", "SQUAD_DATABASE": "other"}
        )
        self.assertEqual(
            (settings.mongo_uri, settings.database), ("mongodb://127.0.0.1:27018", "other")
        )

    def test_sweep_levels_from_environment(self) -> None:
        """``SWEEP_LEVELS=25,50`` restricts a sweep; duplicates and spaces are ignored."""
        settings = parse_arguments(["--sweep", "3s"], {"SWEEP_LEVELS": "25, 50,25"})
        self.assertEqual(settings.levels, (25, 50))
        self.assertEqual(settings.connections, 25)
        self.assertEqual(parse_levels("1000"), (1000,))

    def test_bad_sweep_levels(self) -> None:
        """A non-numeric level, or no level at all, in SWEEP_LEVELS is refused, naming it."""
        for text in ("25,fifty", ",", "0"):
            with self.assertRaises(UsageError) as caught:
                parse_arguments(["--sweep"], {"SWEEP_LEVELS": text})
            self.assertIn("SWEEP_LEVELS", str(caught.exception))

    def test_sweep_targets_from_environment(self) -> None:
        """``SWEEP_TARGETS=squad,baseline`` restricts a sweep to those targets, in that order."""
        settings = parse_arguments(["--sweep"], {"SWEEP_TARGETS": "baseline, squad"})
        self.assertEqual(settings.targets, ("baseline", "squad"))
        chosen = select_targets(settings.targets, TargetContext(settings, {}, port=lambda: 9999))
        self.assertEqual([target.label for target in chosen], ["baseline", "squad"])
        self.assertEqual(chosen[1].url, DEFAULT_URL)
        self.assertIsNone(chosen[1].command)
        self.assertIsNotNone(chosen[0].command)
        self.assertEqual(chosen[0].url, "http://127.0.0.1:9999")

    def test_all_targets_by_default(self) -> None:
        """Without SWEEP_TARGETS a sweep measures squad, the baseline, the ceiling, the stored
        reference with and without the processed-update, and Node in one process and in one
        per core."""
        settings = parse_arguments(["--sweep"], {})
        chosen = select_targets(None, TargetContext(settings, {}, port=lambda: 9999))
        self.assertEqual(
            [target.label for target in chosen],
            [
                "squad",
                "baseline",
                "ceiling",
                "stored",
                "stored-processed",
                "reference-node",
                "reference-node-cluster",
            ],
        )
        self.assertIsNone(chosen[2].database)

    def test_unknown_sweep_target(self) -> None:
        """An unknown target name is refused, and the message lists the known ones."""
        settings = parse_arguments(["--sweep"], {"SWEEP_TARGETS": "squad,nginx"})
        with self.assertRaises(UsageError) as caught:
            select_targets(settings.targets, TargetContext(settings, {}, port=lambda: 9999))
        self.assertIn("nginx", str(caught.exception))
        self.assertIn("baseline", str(caught.exception))

    def test_help(self) -> None:
        """``--help`` is recognised, and the help names the arguments, defaults and variables."""
        self.assertTrue(parse_arguments(["--help"], {}).help)
        self.assertTrue(parse_arguments(["-h"], {}).help)
        text = help_text()
        for needle in ("connections", "duration", "--sweep", "--drain", "URL", "SWEEP_LEVELS"):
            self.assertIn(needle, text)
