"""
``./bin/benchmark --original-tool``: the original challenge's client on its pinned versions
(autocannon 4.6.0, faker 4.1.0), and the explanation of its non-2xx from squad's ``/metrics``.

The bodies test and the real run need node and ``benchmark/load/original-tool/node_modules``
(``./bin/setup`` installs them); the real run also needs the database ``./bin/test`` starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, cast

from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.iweb import IRequest

from benchmark.args import parse_arguments
from benchmark.figures import SweepResults, TargetResult
from benchmark.original_tool.figures import (
    OriginalRun,
    OriginalToolFigures,
    SquadView,
    as_level,
    metric_samples,
    squad_view,
)
from benchmark.original_tool.report import console_report, explain
from benchmark.original_tool.run import ORIGINAL_TOOL_DIR, SWEEP_LABEL, measure_original
from benchmark.report.markdown import render_markdown
from benchmark.report.verdicts import verdicts
from harness.probes import free_port
from squad.http.validation import InvalidRequest, parse_signup
from tests.support import database_uri, squad_command, start_service
from tests.tooling.benchmark.fixtures import recorded_sweep

DATABASE = "squad_original_tool_test"
BODIES = 5000


def _needs_original_tool() -> str:
    node = shutil.which(os.environ.get("NODE") or "node")
    if not (ORIGINAL_TOOL_DIR / "node_modules" / "faker").is_dir():
        raise SkipTest(
            "benchmark/load/original-tool/node_modules is missing: ./bin/setup installs "
            "autocannon 4.6.0 and faker 4.1.0 there"
        )
    if not node:
        raise SkipTest("node is not on PATH")
    return node


def _runner(**overrides: Any) -> dict[str, Any]:
    """The JSON runner.js prints, for 25 connections whose only non-2xx are bodyless 400s."""
    data: dict[str, Any] = {
        "connections": 25,
        "duration": 10.02,
        "sent": 20_025,
        "ok": 19_975,
        "non2xx": 25,
        "errors": 0,
        "timeouts": 0,
        "statusCodes": {"201": 19_975, "400": 25},
        "bodylessStatusCodes": {"400": 25},
        "requestsPerSecond": 2000.5,
        "latencyMs": {"p50": 10, "p90": 15, "p99": 40, "max": 120.5, "mean": 11.2},
        "loadGeneratorCpuSeconds": 3.0,
        "elapsed": 10.1,
        "autocannon": "4.6.0",
        "faker": "4.1.0",
        "node": "v20.20.2",
    }
    data.update(overrides)
    return data


def _metrics(created: float, refused: float, invalid: float, overloaded: float = 0) -> str:
    return f"""# HELP squad_http_requests_total HTTP requests answered
# TYPE squad_http_requests_total counter
squad_http_requests_total{{method="POST",route="/users",status="201"}} {created}
squad_http_requests_total{{method="POST",route="/users",status="400"}} {refused}
squad_http_requests_total{{method="GET",route="/health",status="204"}} 3.0
squad_http_requests_created{{method="GET",route="/health",status="204"}} 1.7e9
# HELP squad_http_errors_total Error answers written, by their machine code
# TYPE squad_http_errors_total counter
squad_http_errors_total{{code="invalid_json"}} {invalid}
squad_http_errors_total{{code="overloaded"}} {overloaded}
# HELP squad_http_refused_connections_total Connections refused
# TYPE squad_http_refused_connections_total counter
squad_http_refused_connections_total 0.0
# HELP squad_shed_requests_total Sign-ups refused to shed load
# TYPE squad_shed_requests_total counter
squad_shed_requests_total 7.0
"""


class BodiesTests(SynchronousTestCase):
    """The sign-up bodies the original tool makes, from the pinned faker 4.1.0."""

    def test_squad_accepts_every_body(self) -> None:
        """
        5,000 bodies from faker 4.1.0 (a fixed seed, so the test is deterministic), made the
        way the original tool makes them, each with the five fields and an 8-character
        password: squad's validation accepts every one (names with apostrophes such as
        O'Keefe, emails and userNames made from them).
        """
        node = _needs_original_tool()
        done = subprocess.run(
            [node, str(ORIGINAL_TOOL_DIR / "runner.js"), "--bodies", str(BODIES), "--seed", "4"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        lines = done.stdout.splitlines()
        self.assertEqual(len(lines), BODIES)
        refused: list[str] = []
        for line in lines:
            body = json.loads(line)
            self.assertEqual(
                sorted(body), ["email", "firstName", "lastName", "password", "username"]
            )
            self.assertEqual(len(body["password"]), 8)
            try:
                parse_signup(line.encode("utf-8"))
            except InvalidRequest as error:
                refused.append(f"{error.code}: {line}")
        self.assertEqual(refused, [])
        # Different people, not one body repeated.
        self.assertGreater(len({json.loads(line)["email"] for line in lines}), BODIES * 0.9)


class ParsingTests(SynchronousTestCase):
    """Reading the runner's figures and squad's /metrics."""

    def test_figures_from_runner(self) -> None:
        """The runner's JSON becomes the original's four columns plus the bodyless split."""
        figures = OriginalToolFigures.from_runner(_runner())
        self.assertEqual(
            (figures.sent, figures.non2xx, figures.errors, figures.timeouts), (20_025, 25, 0, 0)
        )
        self.assertEqual(figures.bodyless_non2xx, 25)
        self.assertEqual(figures.other_non2xx, 0)
        self.assertEqual(figures.versions["autocannon"], "4.6.0")
        self.assertEqual(figures.max_ms, 120.5)
        load = figures.as_load()
        self.assertEqual((load.non2xx, load.bodyless_non2xx, load.failures), (25, 25, 25))

    def test_bodyless_2xx_is_not_a_non2xx(self) -> None:
        """A bodyless request answered 2xx (a server that accepts empty bodies) is not counted
        among the bodyless non-2xx."""
        figures = OriginalToolFigures.from_runner(
            _runner(non2xx=3, statusCodes={"201": 100, "503": 3}, bodylessStatusCodes={"201": 25})
        )
        self.assertEqual((figures.bodyless_non2xx, figures.other_non2xx), (0, 3))

    def test_metric_samples(self) -> None:
        """Only the counters the explanation uses are read, by name and labels; the _created
        samples and other families are left out."""
        samples = metric_samples(_metrics(10, 2, 2))
        self.assertEqual(
            samples[
                (
                    "squad_http_requests",
                    (("method", "POST"), ("route", "/users"), ("status", "201")),
                )
            ],
            10.0,
        )
        self.assertEqual(samples[("squad_http_errors", (("code", "invalid_json"),))], 2.0)
        self.assertNotIn("squad_shed_requests", {name for name, _ in samples})
        self.assertEqual(len(samples), 6)

    def test_squad_view_is_the_difference(self) -> None:
        """squad's view of a run is what its counters gained between the two scrapes: POST
        /users answers by status, error answers by code; counters that did not move are left
        out."""
        view = squad_view(metric_samples(_metrics(10, 2, 2)), metric_samples(_metrics(60, 7, 7)))
        self.assertEqual(view.statuses, {"201": 50, "400": 5})
        self.assertEqual(view.codes, {"invalid_json": 5})
        self.assertEqual((view.refused, view.timed_out, view.problem), (0, 0, None))


class ExplainTests(SynchronousTestCase):
    """The sentences that say what the non-2xx were."""

    def test_only_bodyless(self) -> None:
        """25 bodyless 400s that squad counted as invalid_json read as one sentence."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(_runner()),
            SquadView({"201": 19_975, "400": 25}, {"invalid_json": 25}),
        )
        first = explain(run)[0]
        self.assertTrue(
            first.startswith(
                "25 non-2xx = 25 x 400 invalid_json, one per connection, all bodyless first "
                "requests"
            ),
            first,
        )
        self.assertIn("every other answer was 2xx", first)

    def test_bodyless_and_something_else(self) -> None:
        """Non-2xx beyond the bodyless ones are counted apart, by status, and timeouts named."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(
                _runner(
                    non2xx=35,
                    errors=2,
                    timeouts=2,
                    statusCodes={"201": 19_965, "400": 25, "503": 10},
                )
            ),
            SquadView(
                {"201": 19_965, "400": 25, "503": 10}, {"invalid_json": 25, "overloaded": 10}
            ),
        )
        lines = explain(run)
        self.assertEqual(
            lines[0], "35 non-2xx: 25 bodyless first requests (25 x 400), 10 anything else"
        )
        self.assertIn("  the anything-else by status (the tool's count): 10 x 503", lines)
        self.assertTrue(any(line.startswith("2 errors (2 of them timeouts") for line in lines))

    def test_unread_answers(self) -> None:
        """Answers squad wrote that the tool never read (in flight at its stop) are named,
        with their non-2xx statuses, and do not change what the tool's non-2xx were."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(_runner()),
            SquadView(
                {"201": 19_990, "400": 25, "503": 7},
                {"invalid_json": 25, "database_unavailable": 7},
            ),
        )
        lines = explain(run)
        self.assertIn("25 non-2xx = 25 x 400 invalid_json, one per connection", lines[0])
        self.assertIn(
            "squad wrote 22 more answers than the tool read (in flight when it stopped; the "
            "non-2xx among them: 7 x 503).",
            lines,
        )

    def test_fewer_bodyless_than_connections(self) -> None:
        """Connections that never got an answer have no bodyless non-2xx: the sentence says
        how many of the connections did."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(
                _runner(
                    non2xx=20, statusCodes={"201": 5, "400": 20}, bodylessStatusCodes={"400": 20}
                )
            ),
            SquadView({"201": 5, "400": 20}, {"invalid_json": 20}),
        )
        self.assertIn("20 of 25 connections", explain(run)[0])

    def test_no_metrics(self) -> None:
        """A target without squad's /metrics still gets the tool's table, and the reason the
        second view is missing."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(_runner()),
            SquadView(problem="GET /metrics answered 404"),
        )
        report = console_report("http://127.0.0.1:1", run)
        self.assertIn("requests sent", report)
        self.assertIn("unavailable: GET /metrics answered 404", report)

    def test_console_report_sets_both_views_side_by_side(self) -> None:
        """The original's four columns and squad's counts share the same lines."""
        run = OriginalRun(
            OriginalToolFigures.from_runner(_runner()),
            SquadView({"201": 19_975, "400": 25}, {"invalid_json": 25}),
        )
        lines = console_report("http://127.0.0.1:1", run).splitlines()
        header = next(line for line in lines if "requests sent" in line)
        self.assertIn("answers", header)
        self.assertTrue(any("invalid_json" in line and "20,025" not in line for line in lines))
        self.assertTrue(any("20,025" in line and "201" in line for line in lines))


class SweepTests(SynchronousTestCase):
    """The original tool's rows in a sweep report and its verdict."""

    def _results(self, other_non2xx: int) -> SweepResults:
        rows = []
        for connections in (25, 1000):
            run = OriginalRun(
                OriginalToolFigures.from_runner(
                    _runner(
                        connections=connections,
                        non2xx=connections + other_non2xx,
                        statusCodes={"201": 10_000, "400": connections, "503": other_non2xx},
                        bodylessStatusCodes={"400": connections},
                    )
                ),
                SquadView(),
            )
            rows.append(as_level(run))
        base = recorded_sweep()
        squad = next(target for target in base.targets if target.label == "squad")
        original = TargetResult(SWEEP_LABEL, "the original tool", squad.url, rows)
        return SweepResults(**{**base.__dict__, "targets": [squad, original], "levels": [25, 1000]})

    def test_verdict_counts_only_the_anything_else(self) -> None:
        """Bodyless first requests alone meet the original tool's target; anything else
        misses it, with its count per level."""
        judged = {v.target: v for v in verdicts(self._results(0))}
        name = next(name for name in judged if name.startswith("original tool"))
        self.assertTrue(judged[name].met, judged[name])
        self.assertEqual(
            judged[name].measured,
            "0 at 25 (besides 25 bodyless), 0 at 1000 (besides 1,000 bodyless)",
        )
        missed = {v.target: v for v in verdicts(self._results(4))}[name]
        self.assertFalse(missed.met)
        self.assertIn("4 at 25 (besides 25 bodyless)", missed.measured)

    def test_report_splits_the_non2xx(self) -> None:
        """report.md has a table with the bodyless first requests and the anything-else per
        level, and the rows say how many non-2xx were bodyless."""
        text = render_markdown(self._results(4), [])
        self.assertIn("bodyless first requests + anything else", text)
        self.assertIn(f"| **{SWEEP_LABEL}** | 25 + 4 | 1,000 + 4 |", text)
        self.assertIn("29 (25 bodyless)", text)

    def test_arguments(self) -> None:
        """--original-tool parses alone (the original's defaults), with a sweep, and refuses
        --drain, which the original never did."""
        settings = parse_arguments(["--original-tool"], {})
        self.assertTrue(settings.original_tool)
        self.assertEqual((settings.connections, settings.duration), (25, 45.0))
        self.assertTrue(parse_arguments(["--sweep", "5s", "--original-tool"], {}).original_tool)
        self.assertFalse(parse_arguments([], {}).original_tool)
        from benchmark.args import UsageError

        self.assertRaises(UsageError, parse_arguments, ["--original-tool", "--drain"], {})


class ErrorCounterTests(SynchronousTestCase):
    """squad's per-code error counter, which the explanation reads."""

    def test_write_error_counts_its_code(self) -> None:
        """Every error answer written through squad.http.errors.write_error adds one to
        squad_http_errors_total with its machine code."""
        from prometheus_client import REGISTRY
        from twisted.web.test.requesthelper import DummyRequest

        from squad.http.errors import ErrorKind, write_error
        from squad.metrics import SquadMetrics

        SquadMetrics.get()

        def count() -> float:
            value = REGISTRY.get_sample_value("squad_http_errors_total", {"code": "not_found"})
            return value or 0.0

        before = count()
        request = cast(IRequest, DummyRequest([b"x"]))
        write_error(request, ErrorKind.NOT_FOUND)
        self.assertEqual(count(), before + 1)


class RealRunTests(SynchronousTestCase):
    """One short run of the original tool against a real squad."""

    def test_five_connections(self) -> None:
        """
        ``--original-tool 5 2s`` against squad (one process, private database and port): the
        original's table has exactly 5 non-2xx, and every one is a bodyless first request
        that squad answered 400 invalid_json; every other answer is 201.
        """
        _needs_original_tool()
        self.mongo_uri = database_uri()
        port = free_port()
        options = ["--allow-flush", "--workers", "1", "--slow-min", "0.1", "--slow-max", "0.2"]
        command = squad_command(port, self.mongo_uri, DATABASE, *options)
        self.addCleanup(self._drop)
        url = start_service(self, "squad", command, port)

        run = measure_original(url, 5, 2.0, progress=False)
        figures, view = run.figures, run.view
        shown = console_report(url, run)
        self.assertEqual(figures.non2xx, 5, shown)
        self.assertEqual(figures.bodyless_status_codes, {"400": 5}, shown)
        self.assertEqual(figures.other_non2xx, 0, shown)
        self.assertEqual((figures.errors, figures.timeouts), (0, 0), shown)
        self.assertEqual(set(figures.status_codes), {"201", "400"}, shown)
        self.assertGreater(figures.ok, 5, shown)
        self.assertIsNone(view.problem, shown)
        self.assertEqual(view.codes, {"invalid_json": 5}, shown)
        self.assertEqual(view.statuses["400"], 5, shown)
        self.assertIn("5 non-2xx = 5 x 400 invalid_json, one per connection", shown)

    def _drop(self) -> None:
        import pymongo

        client: Any = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000)
        try:
            client.drop_database(DATABASE)
        finally:
            client.close()
