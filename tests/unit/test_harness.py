"""The logic of the shared harness: waiting with a clock and a sleep of the test's own, and the
commands and environment that start squad and the embedded database."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from harness.probes import NotReady, wait_until
from harness.services import ROOT, database_command, squad_command, squad_environment, twistd


class FakeTime:
    """A clock that only a sleep moves on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class WaitUntilTests(SynchronousTestCase):
    def test_returns_the_seconds_waited_once_ready(self) -> None:
        """The answer is how long it took, asking every interval until the check is true."""
        time = FakeTime()
        answers = iter([False, False, True])
        waited = wait_until(
            lambda: next(answers), 10, "x", interval=0.5, clock=time.clock, sleep=time.sleep
        )
        self.assertEqual((waited, time.sleeps), (1.0, [0.5, 0.5]))

    def test_ready_at_once_does_not_sleep(self) -> None:
        """A check that is true at once returns 0 without sleeping."""
        time = FakeTime()
        self.assertEqual(wait_until(lambda: True, 1, "x", clock=time.clock, sleep=time.sleep), 0)
        self.assertEqual(time.sleeps, [])

    def test_gives_up_after_the_limit(self) -> None:
        """Past the limit it raises NotReady naming what it waited for and the limit."""
        time = FakeTime()
        with self.assertRaises(NotReady) as raised:
            wait_until(lambda: False, 2, "FerretDB", clock=time.clock, sleep=time.sleep)
        self.assertEqual(str(raised.exception), "FerretDB not ready after 2 s")
        self.assertAlmostEqual(time.now - 100.0, 2.1)

    def test_stops_as_soon_as_the_process_has_exited(self) -> None:
        """When the process that should answer has exited, it raises at once, without
        waiting for the limit."""
        time = FakeTime()
        with self.assertRaises(NotReady) as raised:
            wait_until(
                lambda: False, 60, "nginx", alive=lambda: False, clock=time.clock, sleep=time.sleep
            )
        self.assertEqual(str(raised.exception), "nginx exited at start")
        self.assertEqual(time.sleeps, [])


class CommandTests(SynchronousTestCase):
    def test_squad_command_runs_twistd_squad_on_loopback(self) -> None:
        """squad runs in the foreground without a pid file, on 127.0.0.1 only, on the database
        named, with the extra arguments last (so they win)."""
        command = squad_command(8123, "mongodb://127.0.0.1:1", "--workers", "2", database="d")
        self.assertEqual(
            command[len(twistd()) :],
            [
                "--pidfile=",
                "-n",
                "squad",
                "--port",
                "tcp:8123:interface=127.0.0.1",
                "--mongo-uri",
                "mongodb://127.0.0.1:1",
                "--database",
                "d",
                "--workers",
                "2",
            ],
        )

    def test_squad_command_without_a_database_keeps_squads_default(self) -> None:
        """Without ``database`` no --database is passed."""
        self.assertNotIn("--database", squad_command(1, "mongodb://127.0.0.1:2"))

    def test_environment_drops_squads_settings_but_those_kept(self) -> None:
        """SQUAD_* settings and the metrics folder of the caller do not reach squad, except
        the ones asked for; the checkout is first on PYTHONPATH."""
        env = squad_environment(
            keep={"SQUAD_SEAL_KEY"},
            base={
                "PATH": "/bin",
                "SQUAD_WORKERS": "8",
                "SQUAD_SEAL_KEY": "k",
                "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
                "PYTHONPATH": "/elsewhere",
            },
        )
        self.assertEqual(
            env,
            {"PATH": "/bin", "SQUAD_SEAL_KEY": "k", "PYTHONPATH": f"{ROOT}:/elsewhere"},
        )

    def test_database_command_is_bin_db_on_the_port_and_folder(self) -> None:
        """The embedded database is the checkout's bin/db with its port and data folder."""
        self.assertEqual(
            database_command(4000, Path("/d")),
            [str(ROOT / "bin" / "db"), "--port", "4000", "--data", "/d"],
        )
