"""``python -m benchmark.probes.hash_drain``: reading squad's hashing figures, timing the drain."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from benchmark.probes.hash_drain import DrainFigures, watch_backlog
from benchmark.run.metrics import parse_metrics
from tests.tooling.benchmark.fixtures import FakeTime

EXPOSITION = """\
# HELP squad_password_hash_backlog Sealed passwords waiting to be hashed
# TYPE squad_password_hash_backlog gauge
squad_password_hash_backlog 1200.0
# TYPE squad_passwords_hashed_total counter
squad_passwords_hashed_total 300.0
squad_http_requests_total{method="POST",route="/users",status="201"} 5.0
squad_http_requests_total{method="GET",route="/health",status="204"} 2.0
"""


class ScriptedProgress:
    """Answers (backlog, hashed so far) from a script, one reading per call."""

    def __init__(self, readings: list[tuple[int, int]]) -> None:
        self.readings = list(readings)

    def read(self) -> tuple[int, int]:
        return self.readings.pop(0)


class HashDrainTests(SynchronousTestCase):
    def test_parse_metrics(self) -> None:
        """Samples are read by name; labelled series of one name are summed; comments skipped."""
        samples = parse_metrics(EXPOSITION)
        self.assertEqual(samples["squad_password_hash_backlog"], 1200.0)
        self.assertEqual(samples["squad_passwords_hashed_total"], 300.0)
        self.assertEqual(samples["squad_http_requests_total"], 7.0)

    def test_drain_is_timed_and_rated(self) -> None:
        """Readings stop when the backlog is empty; the figures give the starting backlog, the
        time it took and the hashing rate; each reading reports the rate since the last."""
        time = FakeTime(100.0)
        progress = ScriptedProgress([(100, 0), (60, 40), (10, 90), (0, 100)])
        reports: list[tuple[float, int, float | None]] = []
        figures = watch_backlog(
            progress,
            interval=2.0,
            clock=time.clock,
            sleep=time.sleep,
            report=lambda *reading: reports.append(reading),
        )
        self.assertEqual(figures, DrainFigures(100, 0, 100, 6.0, True))
        self.assertAlmostEqual(figures.rate, 100 / 6)
        self.assertEqual(
            reports, [(0.0, 100, None), (2.0, 60, 20.0), (4.0, 10, 25.0), (6.0, 0, 5.0)]
        )

    def test_gives_up_at_the_limit(self) -> None:
        """A backlog still there after ``limit`` seconds ends the wait, not drained."""
        time = FakeTime(100.0)
        progress = ScriptedProgress([(50, 0), (40, 10), (30, 20), (20, 30)])
        figures = watch_backlog(
            progress, interval=1.0, limit=2.0, clock=time.clock, sleep=time.sleep
        )
        self.assertFalse(figures.drained)
        self.assertEqual((figures.start, figures.remaining, figures.hashed), (50, 30, 20))
