"""The benchmark's figures, checks and reports, from recorded figures (no load, no network)."""

from __future__ import annotations

import json
import struct
import tempfile
import zlib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from benchmark.figures import (
    LevelResult,
    LoadFigures,
    StoreCheck,
    SweepResults,
    TargetResult,
    sweep_from_json,
    sweep_to_json,
)
from benchmark.report.markdown import render_markdown, write_report
from benchmark.report.tables import box_table, console_report
from benchmark.run.store import nothing_lost, wait_for_drain
from tests.tooling.benchmark.fixtures import level_result, load_figures, recorded_sweep

# What runner.js printed after a real 5 s run at 50 connections (trimmed to the fields it sends).
RUNNER_OUTPUT = {
    "connections": 50,
    "duration": 5.09,
    "sent": 9718,
    "ok": 9668,
    "non2xx": 0,
    "errors": 0,
    "timeouts": 0,
    "resets": 0,
    "statusCodes": {"201": 9668},
    "requestsPerSecond": 1933.6,
    "latencyMs": {"p50": 21.887, "p90": 47.871, "p99": 84.927, "max": 131.2, "mean": 25.3},
    "loadGeneratorCpuSeconds": 1.48,
    "elapsed": 5.1,
    "autocannon": "9.0.0",
    "node": "v20.20.2",
}


def _png_size(path: Path) -> tuple[int, int]:
    """Check that C{path} is a well-formed PNG (signature, chunk CRCs, IEND) and return its size."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} has no PNG signature"
    offset = 8
    chunks = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    width, height = struct.unpack(">II", data[16:24])
    return width, height


_REPORTS: list[Path] = []


def _written_report() -> Path:
    """
    The report of L{recorded_sweep}, written once per test run (drawing the charts takes
    seconds) into trial's temporary directory, which trial clears before the next run.
    """
    if not _REPORTS:
        folder = Path(tempfile.mkdtemp(prefix="benchmark-report-", dir=".")).resolve()
        _REPORTS.append(write_report(recorded_sweep(), folder))
    return _REPORTS[0]


class FiguresTests(SynchronousTestCase):
    """The runner's JSON becomes typed figures, and sweeps survive a JSON round trip."""

    def test_from_runner(self) -> None:
        """Every figure the runner reports lands in the right field."""
        load = LoadFigures.from_runner(RUNNER_OUTPUT)
        self.assertEqual((load.connections, load.sent, load.ok), (50, 9718, 9668))
        self.assertEqual((load.non2xx, load.errors, load.timeouts), (0, 0, 0))
        self.assertEqual(load.requests_per_second, 1933.6)
        self.assertEqual((load.p50_ms, load.p99_ms, load.max_ms), (21.887, 84.927, 131.2))
        self.assertEqual(load.status_codes, {"201": 9668})
        self.assertAlmostEqual(load.loadgen_cpu_percent, 29.0, places=0)

    def test_no_completed_response(self) -> None:
        """A run where nothing completed (the baseline in 3 s) has no latency, not zeros."""
        data = {**RUNNER_OUTPUT, "ok": 0, "latencyMs": {"p50": None, "p90": None, "p99": None}}
        load = LoadFigures.from_runner(data)
        self.assertIsNone(load.p50_ms)
        self.assertIsNone(load.max_ms)

    def test_failures_count_errors_once(self) -> None:
        """Failures are non-2xx plus errors; timeouts are inside errors, not added twice."""
        load = load_figures(25, 1.0, 1.0, 10, timeouts=7)
        self.assertEqual(load.failures, 7)

    def test_json_round_trip(self) -> None:
        """results.json holds everything: reading it back gives the same results."""
        results = recorded_sweep()
        self.assertEqual(sweep_from_json(sweep_to_json(results)), results)

    def test_cpu_per_signup(self) -> None:
        """
        CPU per sign-up is the CPU time of the run in milliseconds over its 2xx answers, for the
        service and the database; unknown when the time was not read or nothing got a 2xx.
        """
        load = load_figures(100, 1000.0, 50.0, ok=20_000)
        level = LevelResult(
            load,
            StoreCheck("PASS", "ok", 20_000),
            service_cpu_seconds=6.88,
            database_cpu_seconds=4.84,
        )
        self.assertAlmostEqual(level.service_cpu_ms_per_signup or 0.0, 0.344)
        self.assertAlmostEqual(level.database_cpu_ms_per_signup or 0.0, 0.242)
        unread = LevelResult(load, StoreCheck("n/a", "stores nothing"), service_cpu_seconds=1.0)
        self.assertIsNone(unread.database_cpu_ms_per_signup)
        nothing = LevelResult(
            load_figures(100, 0.0, 50.0, ok=0),
            StoreCheck("PASS", "ok", 0),
            service_cpu_seconds=3.0,
            database_cpu_seconds=1.0,
        )
        self.assertIsNone(nothing.service_cpu_ms_per_signup)
        self.assertIsNone(nothing.database_cpu_ms_per_signup)

    def test_json_has_cpu_per_signup(self) -> None:
        """results.json gives each level's CPU per sign-up beside the times it comes from."""
        data = json.loads(sweep_to_json(recorded_sweep()))
        squad = data["targets"][0]["levels"][0]
        self.assertAlmostEqual(squad["service_cpu_ms_per_signup"], 30_000 / 70_368)
        self.assertAlmostEqual(squad["database_cpu_ms_per_signup"], 12_000 / 70_368)


class CheckTests(SynchronousTestCase):
    """The nothing-lost check and the drain wait."""

    def test_nothing_lost_pass(self) -> None:
        """More users stored than 2xx answers passes: a stored user's answer may time out."""
        check = nothing_lost(before=10, after=1010, ok=990)
        self.assertEqual((check.verdict, check.stored), ("PASS", 1000))

    def test_nothing_lost_exact(self) -> None:
        """As many users stored as 2xx answers passes."""
        self.assertEqual(nothing_lost(0, 500, 500).verdict, "PASS")

    def test_nothing_lost_fail(self) -> None:
        """Fewer users stored than 2xx answers fails, and says how many were lost."""
        check = nothing_lost(before=0, after=95, ok=100)
        self.assertEqual(check.verdict, "FAIL")
        self.assertIn("5 lost", check.detail)

    def test_drain_waits_until_zero(self) -> None:
        """The drain polls until no user is unprocessed and reports the time it took."""
        remaining = [30, 20, 5, 0]
        now = [0.0]

        class Counter:
            def count_users(self) -> int:
                return 100

            def count_unprocessed(self) -> int:
                return remaining.pop(0)

        def sleep(seconds: float) -> None:
            now[0] += seconds

        heard: list[tuple[float, int]] = []
        outcome = wait_for_drain(
            Counter(),
            limit=60,
            interval=2.0,
            clock=lambda: now[0],
            sleep=sleep,
            report=lambda t, n: heard.append((t, n)),
        )
        self.assertEqual((outcome.drained, outcome.seconds, outcome.remaining), (True, 6.0, 0))
        self.assertEqual(heard[-1], (6.0, 0))

    def test_drain_gives_up(self) -> None:
        """The drain is bounded: past the limit it says how many users were left."""
        now = [0.0]

        class Stuck:
            def count_users(self) -> int:
                return 100

            def count_unprocessed(self) -> int:
                return 7

        def sleep(seconds: float) -> None:
            now[0] += seconds

        outcome = wait_for_drain(Stuck(), limit=10, interval=1.0, clock=lambda: now[0], sleep=sleep)
        self.assertEqual((outcome.drained, outcome.remaining), (False, 7))
        self.assertGreaterEqual(outcome.seconds, 10)


class ConsoleTests(SynchronousTestCase):
    """What ./bin/benchmark prints after a single run."""

    def test_box_table(self) -> None:
        """The table has one header row and one row per line, columns aligned."""
        table = box_table(["a", "long header"], [["1", "2"], ["333", "4"]], split=1)
        lines = table.splitlines()
        self.assertEqual(len(lines), 6)
        self.assertEqual(len({len(line) for line in lines}), 1)
        self.assertIn("║", lines[1])

    def test_seed_table_and_extras(self) -> None:
        """The seed's four columns come first, then 2xx, requests/s and the latencies."""
        load = LoadFigures.from_runner(RUNNER_OUTPUT)
        text = console_report(
            "http://localhost:9000",
            LevelResult(
                load,
                StoreCheck("PASS", "9718 users stored for 9668 2xx answers", 9718),
                service_rss_mb=156.4,
                service_cpu_seconds=5.9,
                service_processes=3,
            ),
            database="squad",
        )
        header = next(line for line in text.splitlines() if "requests sent" in line)
        cells = [cell.strip() for cell in header.replace("║", "│").split("│")[1:-1]]
        self.assertEqual(
            cells,
            [
                "requests sent",
                "non-2xx",
                "errors",
                "timeouts",
                "2xx",
                "requests/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "svc CPU ms/2xx",
                "db CPU ms/2xx",
            ],
        )
        row = text.splitlines()[text.splitlines().index(header) + 2]
        values = [cell.strip() for cell in row.replace("║", "│").split("│")[1:-1]]
        # 5.9 s of service CPU over 9,668 2xx; the database's CPU was not read.
        self.assertEqual(
            values,
            [
                "9,718",
                "0",
                "0",
                "0",
                "9,668",
                "1,933.6",
                "21.89",
                "47.87",
                "84.93",
                "131",
                "0.610",
                "-",
            ],
        )
        self.assertIn("nothing lost: PASS", text)
        self.assertIn("load generator 29%", text)
        self.assertIn("service 116% (3 processes)", text)
        self.assertIn("156 MiB RSS across 3 processes", text)
        self.assertIn("50 connections", text)

    def test_drain_lines(self) -> None:
        """With --drain the console says how long the backlog took, or that it did not drain."""
        load = LoadFigures.from_runner(RUNNER_OUTPUT)
        check = StoreCheck("PASS", "ok", 1)
        drained = console_report("u", LevelResult(load, check, drain_seconds=12.34, drained=True))
        self.assertIn("processed 12.3 s after the load", drained)
        stuck = console_report("u", LevelResult(load, check, drain_seconds=600.0, drained=False))
        self.assertIn("NOT drained after 600 s", stuck)


class ReportTests(SynchronousTestCase):
    """report.md, results.json and the charts of a sweep."""

    def setUp(self) -> None:
        self.report = _written_report()
        self.folder = self.report.parent
        self.text = self.report.read_text()

    def test_files(self) -> None:
        """report.md, results.json and four charts land in the folder."""
        self.assertEqual(self.report, self.folder / "report.md")
        names = sorted(path.name for path in self.folder.iterdir())
        self.assertEqual(
            names,
            [
                "failures.png",
                "latency.png",
                "memory.png",
                "report.md",
                "results.json",
                "throughput.png",
            ],
        )
        self.assertEqual(
            json.loads((self.folder / "results.json").read_text())["levels"], [25, 1000]
        )

    def test_charts_are_valid_pngs(self) -> None:
        """Every chart is a well-formed PNG of a readable size, linked from report.md."""
        for name in ("throughput.png", "latency.png", "failures.png", "memory.png"):
            width, height = _png_size(self.folder / name)
            self.assertGreater(width, 600)
            self.assertGreater(height, 400)
            self.assertIn(f"]({name})", self.text)

    def test_a_table_per_level(self) -> None:
        """Each level has its own section with the original tool's columns and a row per target."""
        self.assertIn("## 25 connections", self.text)
        self.assertIn("## 1000 connections", self.text)
        section = self.text.split("## 25 connections", 1)[1].split("## ", 1)[0]
        header = next(line for line in section.splitlines() if line.startswith("| target"))
        for column in ("requests sent", "non-2xx", "errors", "timeouts", "2xx", "requests/s"):
            self.assertIn(f" {column} |", header)
        for column in ("p50 ms", "p90 ms", "p99 ms", "max ms", "nothing lost", "RSS MiB (procs)"):
            self.assertIn(column, header)
        squad_row = next(line for line in section.splitlines() if line.startswith("| **squad**"))
        cells = [cell.strip() for cell in squad_row.strip("|").split("|")]
        # target, sent, non-2xx, errors, timeouts, 2xx, rps, p50, p90, p99, max, stored, verdict
        self.assertEqual(cells[1:7], ["70,393", "0", "0", "0", "70,368", "2,345.6"])
        self.assertEqual(cells[9:13], ["12.34", "24.68", "70,368", "PASS"])
        self.assertEqual(cells[13:15], ["14.5", "120 (3)"])
        baseline_row = next(
            line for line in section.splitlines() if line.startswith("| **baseline**")
        )
        self.assertIn("| 40 | 40 |", baseline_row)

    def test_summary_tables(self) -> None:
        """The summary puts each target's requests/s and p99 side by side across levels."""
        summary = self.text.split("## Summary", 1)[1].split("## Charts", 1)[0]
        self.assertIn("| target | 25 conns | 1000 conns |", summary)
        self.assertIn("| **squad** | 2,346 | 2,100 |", summary)
        self.assertIn("| **baseline** | 2 | 66 |", summary)
        self.assertIn("| **squad** | 12.34 | 988 |", summary)
        self.assertIn("| **reference-node** | - | - |", summary)

    def test_cpu_shares(self) -> None:
        """Each row shows the CPU of the service, database, load generator and everything else."""
        section = self.text.split("## 25 connections", 1)[1].split("## ", 1)[0]
        self.assertIn("CPU % svc/db/load/other", section)
        self.assertIn("| 100/40/30/5 |", section)
        self.assertNotIn("Disturbed runs", self.text)

    def test_cpu_per_signup_in_the_report(self) -> None:
        """
        Each level's row and the summary give the service's and the database's CPU per 2xx
        sign-up, in ms (squad at 25: 30 s and 12 s over 70,368 answers).
        """
        section = self.text.split("## 25 connections", 1)[1].split("## ", 1)[0]
        self.assertIn("CPU ms/2xx svc/db", section)
        squad_row = next(line for line in section.splitlines() if line.startswith("| **squad**"))
        self.assertTrue(squad_row.endswith("| 0.426 / 0.171 |"), squad_row)
        summary = self.text.split("## Summary", 1)[1].split("## Against", 1)[0]
        self.assertIn("**CPU per 2xx sign-up (ms): service / database, during the run**", summary)
        self.assertIn("| **squad** | 0.426 / 0.171 | 0.476 / 0.190 |", summary)

    def test_disturbed_runs_are_flagged(self) -> None:
        """A run during which other processes were busy is named in a warning at the top."""
        results = recorded_sweep()
        squad = results.targets[0]
        noisy = LevelResult(**{**squad.levels[0].__dict__, "other_cpu_seconds": 27.0})
        text = render_markdown(
            SweepResults(
                **{
                    **results.__dict__,
                    "targets": [TargetResult("squad", "s", "u", [noisy, squad.levels[1]])],
                }
            ),
            [],
        )
        self.assertIn("**Disturbed runs**", text)
        self.assertIn("squad at 25 connections", text)
        self.assertNotIn("squad at 1000", text)

    def test_failed_target_is_reported(self) -> None:
        """A target that could not run is named, with the reason, not silently dropped."""
        self.assertIn("**reference-node was not measured**", self.text)
        self.assertIn("exited before it answered", self.text)

    def test_machine_versions_and_command(self) -> None:
        """The report names the command, the machine and the versions that produced it."""
        self.assertIn("`./bin/benchmark --sweep 30s`", self.text)
        self.assertIn("| CPU model | Test CPU @ 3.00GHz |", self.text)
        self.assertIn("| CPUs | 2 |", self.text)
        self.assertIn("| autocannon | 9.0.0 |", self.text)
        self.assertIn("| database | FerretDB v1.24.2 |", self.text)
        self.assertIn("- a note for the reader", self.text)

    def test_no_memory_chart_without_memory(self) -> None:
        """Without any RSS figure there is no memory chart, and no link to one."""
        results = recorded_sweep()
        bare = SweepResults(
            **{
                **results.__dict__,
                "targets": [
                    TargetResult(
                        "ceiling",
                        "c",
                        "u",
                        [level_result(load_figures(25, 1.0, 1.0, 10), None, rss=None)],
                    )
                ],
                "levels": [25],
            }
        )
        folder = Path(self.mktemp())
        text = write_report(bare, folder).read_text()
        self.assertFalse((folder / "memory.png").exists())
        self.assertNotIn("memory.png", text)
        self.assertIn("n/a", render_markdown(bare, []))
