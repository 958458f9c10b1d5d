"""``./bin/benchmark --rate``: its argument, and the lag, percentile, bucket and wait arithmetic."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from benchmark.args import UsageError, parse_arguments, parse_rate
from benchmark.rate.figures import RateRun
from benchmark.rate.lag import LagFigures, lag_report, percentile
from benchmark.rate.report import console_text, render_markdown, write_rate_report
from benchmark.rate.sampling import (
    FINISH_BACKLOG,
    HASH_OLDEST,
    METRICS,
    SLOW_STEPS_IN_MEMORY,
    SLOW_STEPS_RUNNING,
    Sample,
    wal_file,
)
from benchmark.rate.verdicts import judge
from benchmark.rate.wait import WaitOutcome, unprocessed_from_metrics, wait_until_processed
from benchmark.run.store import DRAIN_LIMIT
from tests.tooling.benchmark.fixtures import FakeTime, level_result, load_figures

START = datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC)


def user(created: float, lag: float | None, naive: bool = True) -> dict[str, Any]:
    """A user created C{created} s after START, processed C{lag} s later (None: not yet)."""
    born = START + timedelta(seconds=created)
    updated = born if lag is None else born + timedelta(seconds=lag)
    if naive:
        # pymongo hands BSON dates back as naive UTC datetimes.
        born, updated = born.replace(tzinfo=None), updated.replace(tzinfo=None)
    return {"date_created": born, "date_updated": updated, "processed": lag is not None}


class RateArgumentTests(SynchronousTestCase):
    """``--rate R`` on the command line."""

    def test_rate_with_connections_and_duration(self) -> None:
        """``--rate 500 50 30s`` is 500 sign-ups/s over 50 connections for 30 s."""
        settings = parse_arguments(["--rate", "500", "50", "30s"], {})
        self.assertEqual((settings.rate, settings.connections, settings.duration), (500, 50, 30.0))
        self.assertFalse(settings.sweep)

    def test_rate_anywhere_and_defaults(self) -> None:
        """The option may come after the positionals; without them, the original tool's defaults."""
        self.assertEqual(parse_arguments(["50", "30s", "--rate=200"], {}).rate, 200)
        settings = parse_arguments(["--rate", "200"], {})
        self.assertEqual((settings.connections, settings.duration), (25, 45.0))

    def test_no_rate_by_default(self) -> None:
        """Without --rate the run offers as much as the connections allow."""
        self.assertIsNone(parse_arguments([], {}).rate)
        self.assertIsNone(parse_arguments(["--sweep"], {}).rate)

    def test_rate_values(self) -> None:
        """A whole number of at least 1, with an optional ``/s``; anything else is refused."""
        self.assertEqual(parse_rate("500"), 500)
        self.assertEqual(parse_rate(" 500/s "), 500)
        for bad in ("0", "-5", "1.5", "fast", ""):
            with self.assertRaises(UsageError, msg=bad):
                parse_rate(bad)

    def test_rate_refuses_sweep(self) -> None:
        """A fixed rate is one run: combined with --sweep it is a usage error."""
        with self.assertRaises(UsageError) as caught:
            parse_arguments(["--sweep", "--rate", "100"], {})
        self.assertIn("--sweep", str(caught.exception))


class PercentileTests(SynchronousTestCase):
    """The nearest-rank percentile."""

    def test_nearest_rank(self) -> None:
        """Of 1..100, p50 is 50, p99 is 99, p100 is 100; of one value, every percentile is it."""
        values = [float(n) for n in range(1, 101)]
        self.assertEqual(
            [percentile(values, p) for p in (50, 99, 100, 0)], [50.0, 99.0, 100.0, 1.0]
        )
        self.assertEqual([percentile([7.0], p) for p in (1, 50, 99)], [7.0, 7.0, 7.0])
        # Of ten values, p99 is the largest: the rank is rounded up, never interpolated.
        self.assertEqual(percentile([float(n) for n in range(10)], 99), 9.0)

    def test_empty(self) -> None:
        """No values have no percentile."""
        self.assertRaises(ValueError, percentile, [], 50)

    def test_lag_figures(self) -> None:
        """LagFigures sorts the lags itself and counts the users without one as unprocessed."""
        figures = LagFigures.of(5, [3.0, 1.0, 2.0])
        self.assertEqual(
            (figures.processed, figures.unprocessed, figures.p50, figures.p99, figures.max),
            (3, 2, 2.0, 3.0, 3.0),
        )
        self.assertEqual(LagFigures.of(2, []), LagFigures(2, 0, None, None, None))


class LagReportTests(SynchronousTestCase):
    """The slow-step lag from one read of ``users``."""

    def test_buckets_of_ten_seconds(self) -> None:
        """
        Users fall into 10 s buckets of date_created counted from the load's start; each
        bucket has its own counts and percentiles, and "all" covers every processed user.
        """
        users = [user(float(n) / 10, 5.0 + n / 100) for n in range(100)]  # 0-9.9 s
        users += [user(10.0 + n / 10, 8.0) for n in range(50)]  # 10-14.9 s
        users += [user(14.0, None), user(14.5, None)]
        report = lag_report(users, START.timestamp())
        self.assertEqual(
            [(b.start, b.end, b.lag.created, b.lag.processed) for b in report.buckets],
            [(0.0, 10.0, 100, 100), (10.0, 20.0, 52, 50)],
        )
        first, second = report.buckets
        self.assertAlmostEqual(first.lag.p50 or 0, 5.49, places=3)
        self.assertAlmostEqual(first.lag.p99 or 0, 5.98, places=3)
        self.assertAlmostEqual(first.lag.max or 0, 5.99, places=3)
        self.assertEqual((second.lag.p50, second.lag.max, second.lag.unprocessed), (8.0, 8.0, 2))
        self.assertEqual((report.overall.created, report.overall.processed), (152, 150))
        self.assertAlmostEqual(report.overall.max or 0, 8.0, places=3)
        # The latest date_updated: the user created at 14.9 s, processed 8 s later.
        self.assertAlmostEqual(report.last_processed or 0, 22.9, places=3)

    def test_gaps_early_users_and_time_zones(self) -> None:
        """
        A bucket with no user is left out; a user created before the load's start counts in
        the first bucket; aware and naive (UTC) datetimes give the same lag; a document without
        dates is counted apart, not guessed.
        """
        users = [
            user(-0.5, 6.0),
            user(1.0, 6.0, naive=False),
            user(31.0, 7.5),
            {"processed": True, "date_updated": START},
        ]
        report = lag_report(users, START.timestamp())
        self.assertEqual([b.start for b in report.buckets], [0.0, 30.0])
        self.assertEqual(report.buckets[0].lag, LagFigures(2, 2, 6.0, 6.0, 6.0))
        self.assertEqual(report.buckets[1].lag, LagFigures(1, 1, 7.5, 7.5, 7.5))
        self.assertEqual(report.undated, 1)

    def test_nothing_processed(self) -> None:
        """Without a processed user there is no lag and no last processing time."""
        report = lag_report([user(1.0, None)], START.timestamp())
        self.assertEqual(report.overall, LagFigures(1, 0, None, None, None))
        self.assertIsNone(report.last_processed)


def sample(**metrics: float) -> Sample:
    return Sample(0.0, "after", {name: metrics.get(name) for name in METRICS}, None, None)


class ScriptedCount:
    """The database's count of unprocessed users, read from a script; notes the time of each."""

    def __init__(self, time: FakeTime, left: Iterable[int]) -> None:
        self.time = time
        self.left = iter(left)
        self.counted_at: list[float] = []

    def __call__(self) -> int:
        self.counted_at.append(self.time.now)
        return next(self.left)


class WaitTests(SynchronousTestCase):
    """The wait after the load: /metrics every few seconds, the database only to confirm."""

    def test_unprocessed_from_metrics(self) -> None:
        """
        Running slow steps plus unwritten results; the users in memory stand in when squad
        has no running gauge; None when it has neither.
        """
        both = {SLOW_STEPS_RUNNING: 4.0, FINISH_BACKLOG: 2.0, SLOW_STEPS_IN_MEMORY: 90.0}
        self.assertEqual(unprocessed_from_metrics(both), 6)
        self.assertEqual(unprocessed_from_metrics({SLOW_STEPS_IN_MEMORY: 90.0}), 90)
        self.assertIsNone(unprocessed_from_metrics({HASH_OLDEST: 3.0}))

    def test_counts_once_when_metrics_say_zero(self) -> None:
        """The database is counted only once /metrics says nothing is left."""
        readings = iter([sample(**{SLOW_STEPS_RUNNING: n, FINISH_BACKLOG: 0}) for n in (9, 3, 0)])
        fake = FakeTime()
        count = ScriptedCount(fake, repeat(0))
        outcome = wait_until_processed(
            lambda: next(readings), count, interval=2.0, clock=fake.clock, sleep=fake.sleep
        )
        self.assertEqual((outcome.seconds, outcome.processed, outcome.gave_up), (4.0, True, False))
        self.assertEqual(len(count.counted_at), 1)

    def test_recounts_while_the_database_disagrees(self) -> None:
        """
        Users /metrics cannot see (stored for later adoption) keep the wait going; the
        database is counted again at most every recount interval.
        """
        zero = sample(**{SLOW_STEPS_RUNNING: 0, FINISH_BACKLOG: 0})
        fake = FakeTime()
        count = ScriptedCount(fake, [40, 12, 0])
        outcome = wait_until_processed(
            lambda: zero, count, interval=2.0, recount=10.0, clock=fake.clock, sleep=fake.sleep
        )
        self.assertEqual(count.counted_at, [0.0, 10.0, 20.0])
        self.assertEqual((outcome.processed, outcome.remaining), (True, 0))

    def test_unwritten_results_do_not_hold_off_the_count(self) -> None:
        """
        Once no slow step runs, the database is counted even while the finish writer still has
        a backlog (it carries password hashes too, which trickle in for minutes); a count that
        is not zero yet is repeated at the recount interval.
        """
        readings = iter(
            [sample(**{SLOW_STEPS_RUNNING: 0, FINISH_BACKLOG: n}) for n in (900, 2, 2, 1, 2)]
        )
        fake = FakeTime()
        count = ScriptedCount(fake, [300, 0])
        outcome = wait_until_processed(
            lambda: next(readings),
            count,
            interval=2.0,
            recount=4.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        self.assertEqual(count.counted_at, [0.0, 4.0])
        self.assertEqual((outcome.processed, outcome.seconds), (True, 4.0))

    def test_gives_up_at_the_limit(self) -> None:
        """A backlog that never drains ends the wait at the limit, saying what was left."""
        busy = sample(**{SLOW_STEPS_RUNNING: 7, FINISH_BACKLOG: 1})
        fake = FakeTime()
        outcome = wait_until_processed(
            lambda: busy,
            lambda: 0,
            limit=DRAIN_LIMIT,
            interval=2.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        self.assertEqual((outcome.processed, outcome.gave_up), (False, True))
        self.assertIsNone(outcome.remaining)
        self.assertEqual(outcome.seconds, DRAIN_LIMIT)

    def test_without_gauges_the_database_decides(self) -> None:
        """When /metrics has none of the gauges, the database is counted every recount."""
        fake = FakeTime()
        left = iter([5, 0])
        outcome = wait_until_processed(
            sample, lambda: next(left), recount=10.0, clock=fake.clock, sleep=fake.sleep
        )
        self.assertEqual((outcome.processed, outcome.seconds), (True, 10.0))


def rate_run(**changes: Any) -> RateRun:
    """A 30 s run at 500/s whose figures meet every sustained-load target."""
    load = load_figures(50, 500.0, 12.0, 15_000)
    samples = [
        Sample(
            float(at),
            "load" if at <= 30 else "after",
            {name: 1.0 for name in METRICS if name != HASH_OLDEST} | {HASH_OLDEST: None},
            20 * 1024 * 1024 if at else 0,
            250.0,
        )
        for at in range(0, 50, 2)
    ]
    users = [user(n / 500, 10.0) for n in range(15_000)]
    fields: dict[str, Any] = {
        "started": "2026-12-01 20:00:00 UTC",
        "command": "./bin/benchmark --rate 500 50 30s",
        "url": "http://127.0.0.1:9417",
        "database": "squad",
        "rate": 500,
        "connections": 50,
        "duration": 30.0,
        "slow_max": 15.0,
        "load_seconds": 30.0,
        "result": level_result(load, 15_000, rss=300.0),
        "samples": samples,
        "wait": None,
        "lag": lag_report(users, START.timestamp()),
        "wal": "/tmp/db/squad.sqlite-wal",
        "wait_offset": 1.5,
    }
    fields["wait"] = WaitOutcome(12.0, True, 0, False)
    fields.update(changes)
    return RateRun(**fields)


class JudgeTests(SynchronousTestCase):
    """The sustained-load targets, judged on one run's figures."""

    def test_every_target_met(self) -> None:
        """A run within every bound meets every target, each with the figure it rests on."""
        judged = {j.target: (j.met, j.measured) for j in judge(rate_run())}
        self.assertEqual(
            judged,
            {
                "every answer 2xx": (True, "15,000 2xx, 0 non-2xx, 0 errors (0 timeouts)"),
                "p99 ≤ 50 ms": (True, "12.0 ms"),
                "slow-step lag p99 ≤ 20 s (slow max + 5) in every bucket": (
                    True,
                    "worst 10.0 s (users created 0-10 s)",
                ),
                # The count that found none left (12 s into a wait that began 1.5 s after the
                # load) bounds it; the last date_updated is only when the last step ended.
                "every user processed ≤ 30 s after the load": (
                    True,
                    "at most 13.5 s (the last slow-step result at 10.0 s)",
                ),
                "WAL ≤ 64 MiB": (True, "largest 20.0 MiB"),
                "squad RSS ≤ 400 MB": (True, "largest 300 MiB = 315 MB"),
            },
        )

    def test_shortfalls(self) -> None:
        """
        A slow bucket, an unprocessed user, a late finish, a large WAL, too much memory and a
        failed answer are each not met; a WAL that was never found is not judged.
        """
        users = [user(n / 100, 6.0) for n in range(1000)] + [user(25.0, 40.0), user(26.0, None)]
        big = [Sample(0.0, "load", {}, 100 * 1024 * 1024, 500.0)]
        failing = load_figures(50, 400.0, 80.0, 12_000, timeouts=3)
        run = rate_run(
            lag=lag_report(users, START.timestamp()),
            samples=big,
            result=level_result(failing, 12_003),
            wait=WaitOutcome(600.0, False, 1, True),
        )
        judged = {j.target: (j.met, j.measured) for j in judge(run)}
        self.assertEqual(judged["every answer 2xx"][0], False)
        self.assertEqual(judged["p99 ≤ 50 ms"], (False, "80.0 ms"))
        lag_met, lag_text = judged["slow-step lag p99 ≤ 20 s (slow max + 5) in every bucket"]
        self.assertFalse(lag_met)
        self.assertIn("worst 40.0 s (users created 20-30 s); 1 users never processed", lag_text)
        self.assertEqual(
            judged["every user processed ≤ 30 s after the load"],
            (False, "1 not processed 602 s after it"),
        )
        # A WAL file already large at the start is named as such: SQLite never shrinks it.
        self.assertEqual(
            judged["WAL ≤ 64 MiB"],
            (False, "largest 100.0 MiB (100.0 MiB when the load started)"),
        )
        self.assertEqual(judged["squad RSS ≤ 400 MB"][0], False)
        unknown = {j.target: j.met for j in judge(rate_run(samples=[sample()], wal=None))}
        self.assertIsNone(unknown["WAL ≤ 64 MiB"])

    def test_reports_say_what_is_missing(self) -> None:
        """
        The console text and report.md carry the verdicts, the lag per bucket, the samples
        and the name of every gauge squad did not export.
        """
        run = rate_run()
        text = console_text(run, Path("/tmp/x"))
        markdown = render_markdown(run)
        for needed in ("0-10 s", "not available in /metrics: " + HASH_OLDEST, "report: /tmp/x"):
            self.assertIn(needed, text)
        self.assertIn("## Slow-step lag by 10 s of `date_created`", markdown)
        self.assertIn(f"`{HASH_OLDEST}`", markdown)
        self.assertIn("| p99 ≤ 50 ms | 12.0 ms | met |", markdown)

    def test_cpu_per_signup_printed_and_recorded(self) -> None:
        """
        ``--rate`` prints the service's and the database's CPU per 2xx sign-up during the load,
        and writes them in report.md and rate.json (30 s and 12 s over 15,000 answers).
        """
        run = rate_run()
        self.assertIn(
            "CPU per 2xx sign-up during the load: service 2.000 ms, database 0.800 ms",
            console_text(run, None),
        )
        self.assertIn("per 2xx sign-up: service 2.000 ms, database 0.800 ms", render_markdown(run))
        folder = Path(self.mktemp())
        write_rate_report(run, folder)
        written = json.loads((folder / "rate.json").read_text())["result"]
        self.assertAlmostEqual(written["service_cpu_ms_per_signup"], 2.0)
        self.assertAlmostEqual(written["database_cpu_ms_per_signup"], 0.8)
        self.assertEqual(written["service_cpu_seconds"], 30.0)

    def test_wal_file_name(self) -> None:
        """FerretDB's SQLite backend keeps database D's WAL in D.sqlite-wal."""
        self.assertEqual(wal_file(Path("/d"), "squad"), Path("/d/squad.sqlite-wal"))
