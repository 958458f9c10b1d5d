"""
``./bin/benchmark --original-tool``: the original challenge's client, and what its non-2xx were.

The judges run the original tool, not ours, so this runs that client's behaviour on the versions it
pinned (``benchmark/original-tool/runner.js``, autocannon 4.6.0 and faker 4.1.0): the body is set
in autocannon's ``response`` handler, so each connection's first request goes out with
``Content-Type: application/json`` and no body, and squad refuses it with 400 (an empty sign-up is
not a user). This module runs it after GET /health and DELETE /collections, prints the original's
four-column table, and beside it squad's own count of the answers (``/metrics`` before and after
the run: ``POST /users`` answers by status, error answers by their machine code), then says in a
sentence which non-2xx were bodyless first requests and which were anything else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmark.args import REQUEST_TIMEOUT, format_duration
from benchmark.figures import LevelResult, LoadFigures, StoreCheck
from benchmark.load import BENCHMARK_DIR, LoadFailed, node_binary, run_runner
from benchmark.service import check_health, flush

__all__ = [
    "ORIGINAL_TOOL_DIR",
    "SWEEP_DESCRIPTION",
    "SWEEP_LABEL",
    "OriginalRun",
    "OriginalToolFigures",
    "SquadView",
    "console_report",
    "explain",
    "measure_original",
    "metric_samples",
    "run_original_tool",
    "runner_command",
    "squad_view",
]

ORIGINAL_TOOL_DIR = BENCHMARK_DIR / "original-tool"
SWEEP_LABEL = "squad, original tool"
SWEEP_DESCRIPTION = (
    "squad at URL again, loaded by the original challenge's client (autocannon 4.6.0, faker "
    "4.1.0, body set after each response: each connection's first request has none and is "
    "refused 400); `benchmark/original-tool/`"
)
SEED_COLUMNS = ("requests sent", "non-2xx", "errors", "timeouts")

# The squad counters read from /metrics, by what they say.
_REQUESTS = "squad_http_requests"
_ERRORS = "squad_http_errors"
_REFUSED = "squad_http_refused_connections"
_TIMED_OUT = "squad_http_request_timeouts"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _is_2xx(status: str) -> bool:
    return status.isdigit() and 200 <= int(status) < 300


@dataclass(frozen=True)
class OriginalToolFigures:
    """
    What one run of the original tool measured. The first four are the original's table, with
    autocannon 4.6.0's meanings (C{errors} includes C{timeouts}). C{bodyless_status_codes}
    counts the answers to requests sent without a body, by status: a connection's first request,
    or its resend after a timeout before any answer.
    """

    connections: int
    duration: float
    sent: int
    non2xx: int
    errors: int
    timeouts: int
    ok: int
    requests_per_second: float
    status_codes: dict[str, int]
    bodyless_status_codes: dict[str, int]
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    loadgen_cpu_seconds: float = 0.0
    elapsed: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def bodyless_non2xx(self) -> int:
        """Non-2xx answers to requests that went out without a body."""
        return sum(n for code, n in self.bodyless_status_codes.items() if not _is_2xx(code))

    @property
    def other_non2xx(self) -> int:
        """Every other non-2xx: answers to requests that carried a sign-up body."""
        return max(0, self.non2xx - self.bodyless_non2xx)

    @classmethod
    def from_runner(cls, data: Mapping[str, Any]) -> OriginalToolFigures:
        """The figures from the JSON object ``original-tool/runner.js`` prints at the end."""
        latency = data.get("latencyMs") or {}

        def ms(name: str) -> float | None:
            value = latency.get(name)
            return None if value is None else float(value)

        return cls(
            connections=int(data["connections"]),
            duration=float(data["duration"]),
            sent=int(data["sent"]),
            non2xx=int(data["non2xx"]),
            errors=int(data["errors"]),
            timeouts=int(data["timeouts"]),
            ok=int(data["ok"]),
            requests_per_second=float(data["requestsPerSecond"]),
            status_codes={str(k): int(v) for k, v in (data.get("statusCodes") or {}).items()},
            bodyless_status_codes={
                str(k): int(v) for k, v in (data.get("bodylessStatusCodes") or {}).items()
            },
            p50_ms=ms("p50"),
            p90_ms=ms("p90"),
            p99_ms=ms("p99"),
            max_ms=ms("max"),
            loadgen_cpu_seconds=float(data.get("loadGeneratorCpuSeconds", 0.0)),
            elapsed=float(data.get("elapsed", data["duration"])),
            versions={
                name: str(data[name]) for name in ("autocannon", "faker", "node") if name in data
            },
        )

    def as_load(self) -> LoadFigures:
        """The same run as L{LoadFigures}, for a sweep's tables, charts and ``results.json``."""
        return LoadFigures(
            connections=self.connections,
            duration=self.duration,
            sent=self.sent,
            ok=self.ok,
            non2xx=self.non2xx,
            errors=self.errors,
            timeouts=self.timeouts,
            requests_per_second=self.requests_per_second,
            p50_ms=self.p50_ms,
            p90_ms=self.p90_ms,
            p99_ms=self.p99_ms,
            max_ms=self.max_ms,
            status_codes=dict(self.status_codes),
            loadgen_cpu_seconds=self.loadgen_cpu_seconds,
            elapsed=self.elapsed,
            bodyless_non2xx=self.bodyless_non2xx,
        )


@dataclass(frozen=True)
class SquadView:
    """
    squad's own count of a run, from ``/metrics`` before and after it: C{statuses} are its
    ``POST /users`` answers by status, C{codes} its error answers by machine code; C{refused}
    and C{timed_out} the connections it refused (503) and the requests it answered 408. C{problem}
    says why there is no view (the target has no squad ``/metrics``).
    """

    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    timed_out: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class OriginalRun:
    """One run of the original tool with squad's view of it."""

    figures: OriginalToolFigures
    view: SquadView


def metric_samples(text: str) -> Samples:
    """The samples of the squad counters in a ``/metrics`` text, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {_REQUESTS, _ERRORS, _REFUSED, _TIMED_OUT}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # the _created samples of a counter
            key = (family.name, tuple(sorted(sample.labels.items())))
            samples[key] = samples.get(key, 0.0) + float(sample.value)
    return samples


def squad_view(before: Samples, after: Samples) -> SquadView:
    """What squad counted between two scrapes (counters only grow; a lower one counts as 0)."""
    statuses: dict[str, int] = {}
    codes: dict[str, int] = {}
    refused = timed_out = 0
    for (name, labels), value in after.items():
        delta = round(value - before.get((name, labels), 0.0))
        if delta <= 0:
            continue
        label = dict(labels)
        if name == _REQUESTS and label.get("method") == "POST" and label.get("route") == "/users":
            status = label.get("status", "?")
            statuses[status] = statuses.get(status, 0) + delta
        elif name == _ERRORS:
            code = label.get("code", "?")
            codes[code] = codes.get(code, 0) + delta
        elif name == _REFUSED:
            refused += delta
        elif name == _TIMED_OUT:
            timed_out += delta
    return SquadView(statuses, codes, refused, timed_out)


def _scrape(base_url: str, timeout: float = 10.0) -> tuple[Samples | None, str | None]:
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=timeout) as response:
            return metric_samples(response.read().decode("utf-8", "replace")), None
    except urllib.error.HTTPError as error:
        return None, f"GET /metrics answered {error.code}"
    except (OSError, ValueError) as error:
        return None, f"GET /metrics failed ({error})"


def runner_command(
    url: str, connections: int, duration: float, timeout: float = REQUEST_TIMEOUT
) -> list[str]:
    """The command that runs the original tool against C{url}."""
    if not (ORIGINAL_TOOL_DIR / "node_modules" / "autocannon").is_dir():
        raise LoadFailed(
            "autocannon 4.6.0 is not installed: run ./bin/setup (npm ci in "
            "benchmark/original-tool/)"
        )
    config = {"url": url, "connections": connections, "duration": duration, "timeout": timeout}
    return [node_binary(), str(ORIGINAL_TOOL_DIR / "runner.js"), json.dumps(config)]


def run_original_tool(
    url: str, connections: int, duration: float, progress: bool = True
) -> OriginalToolFigures:
    """Run the original tool once against C{url} and return its figures."""
    figures = run_runner(runner_command(url, connections, duration), progress, "the original tool")
    return OriginalToolFigures.from_runner(figures)


def measure_original(
    url: str,
    connections: int,
    duration: float,
    progress: bool = True,
    tell: Callable[[str], None] | None = None,
) -> OriginalRun:
    """
    The original's procedure (GET /health, DELETE /collections, the load) with squad's
    ``/metrics`` read just before and just after the load. Raises
    L{benchmark.service.ServiceDown} or L{LoadFailed} as L{benchmark.run.measure} does.
    """
    check_health(url)
    warning = flush(url)
    if warning and tell is not None:
        tell(f"warning: {warning}")
    before, problem = _scrape(url)
    figures = run_original_tool(url, connections, duration, progress=progress)
    after, later_problem = _scrape(url) if before is not None else (None, problem)
    if before is None or after is None:
        view = SquadView(problem=problem or later_problem)
    else:
        view = squad_view(before, after)
    return OriginalRun(figures, view)


def as_level(run: OriginalRun) -> LevelResult:
    """A sweep row for C{run}: its figures, no database check (the original made none)."""
    return LevelResult(
        load=run.figures.as_load(),
        check=StoreCheck("n/a", "the original tool checks nothing in the database"),
    )


def _count(items: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} x {key}" for key, n in sorted(items.items()))


def explain(run: OriginalRun) -> list[str]:
    """
    Sentences that say what the non-2xx were: e.g. "25 non-2xx = 25 x 400 invalid_json, one
    per connection, all bodyless first requests", then whatever else there was.
    """
    figures, view = run.figures, run.view
    bodyless = {c: n for c, n in figures.bodyless_status_codes.items() if not _is_2xx(c)}
    lines: list[str] = []
    if figures.non2xx == 0:
        lines.append("0 non-2xx.")
    elif bodyless and figures.other_non2xx == 0:
        statuses = _count(bodyless)
        invalid = view.codes.get("invalid_json", 0)
        what = (
            f"{figures.bodyless_non2xx:,} x 400 invalid_json"
            if set(bodyless) == {"400"} and invalid >= figures.bodyless_non2xx
            else statuses
        )
        per = (
            "one per connection"
            if figures.bodyless_non2xx == figures.connections
            else f"{figures.bodyless_non2xx:,} of {figures.connections:,} connections"
        )
        lines.append(
            f"{figures.non2xx:,} non-2xx = {what}, {per}, all bodyless first requests "
            "(autocannon 4.6.0 sends each connection's first request before the response "
            "handler sets a body); every other answer was 2xx."
        )
    else:
        lines.append(
            f"{figures.non2xx:,} non-2xx: {figures.bodyless_non2xx:,} bodyless first requests"
            + (f" ({_count(bodyless)})" if bodyless else "")
            + f", {figures.other_non2xx:,} anything else"
        )
        others = {
            c: n - bodyless.get(c, 0)
            for c, n in figures.status_codes.items()
            if not _is_2xx(c) and n - bodyless.get(c, 0) > 0
        }
        if others:
            lines.append(f"  the anything-else by status (the tool's count): {_count(others)}")
    if figures.errors:
        lines.append(
            f"{figures.errors:,} errors ({figures.timeouts:,} of them timeouts; autocannon "
            "resends the same request on a new connection after each)."
        )
    if view.problem:
        lines.append(f"squad's view: unavailable: {view.problem}")
    else:
        answered = sum(n for s, n in figures.status_codes.items())
        wrote = sum(view.statuses.values())
        if wrote > answered:
            unread = {
                status: n - figures.status_codes.get(status, 0)
                for status, n in view.statuses.items()
                if not _is_2xx(status) and n > figures.status_codes.get(status, 0)
            }
            lines.append(
                f"squad wrote {wrote - answered:,} more answers than the tool read (in flight "
                "when it stopped"
                + (f"; the non-2xx among them: {_count(unread)}" if unread else "")
                + ")."
            )
        if view.refused or view.timed_out:
            lines.append(
                f"squad also refused {view.refused:,} connections (503, at its connection limit)"
                f" and answered {view.timed_out:,} requests 408 (not whole within its deadline)."
            )
    return lines


def _box(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    from benchmark.report import box_table

    return box_table(headers, rows).splitlines()


def _side_by_side(left: list[str], right: list[str], gap: str = "   ") -> list[str]:
    width = max((len(line) for line in left), default=0)
    height = max(len(left), len(right))
    left = left + [""] * (height - len(left))
    right = right + [""] * (height - len(right))
    return [(a.ljust(width) + gap + b).rstrip() for a, b in zip(left, right, strict=True)]


def _view_rows(view: SquadView) -> list[list[str]]:
    rows = [["status", status, f"{n:,}"] for status, n in sorted(view.statuses.items())]
    rows += [["error code", code, f"{n:,}"] for code, n in sorted(view.codes.items())]
    if view.refused:
        rows.append(["503 refused", "connections at the limit", f"{view.refused:,}"])
    if view.timed_out:
        rows.append(["408", "request not whole in time", f"{view.timed_out:,}"])
    return rows


def console_report(url: str, run: OriginalRun) -> str:
    """What ``./bin/benchmark --original-tool`` prints after its run."""
    figures, view = run.figures, run.view
    tool = [
        "the original tool's table",
        *_box(
            SEED_COLUMNS,
            [
                [
                    f"{figures.sent:,}",
                    f"{figures.non2xx:,}",
                    f"{figures.errors:,}",
                    f"{figures.timeouts:,}",
                ]
            ],
        ),
    ]
    if view.problem:
        squad = ["squad's /metrics", f"  unavailable: {view.problem}"]
    else:
        squad = [
            "squad's /metrics: POST /users answers",
            *_box(("by", "value", "answers"), _view_rows(view) or [["-", "-", "0"]]),
        ]
    versions = ", ".join(f"{k} {v}" for k, v in figures.versions.items())
    lines = [
        "",
        f"original tool: {figures.connections} connections for {figures.duration:.1f} s against"
        f" {url} (POST /users, body set after each response, 10 s timeout; {versions})",
        *_side_by_side(tool, squad),
        *explain(run),
        f"2xx {figures.ok:,}; {figures.requests_per_second:,.1f} responses/s; latency (autocannon"
        f" 4.6.0, whole ms) p50 {_ms(figures.p50_ms)}, p90 {_ms(figures.p90_ms)}, p99"
        f" {_ms(figures.p99_ms)}, max {_ms(figures.max_ms)}; load generator"
        f" {100 * figures.loadgen_cpu_seconds / figures.elapsed if figures.elapsed else 0:.0f}%"
        " of a core",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def describe(connections: int, duration: float) -> str:
    """The command that reproduces a run, for reports."""
    return f"./bin/benchmark --original-tool {connections} {format_duration(duration)}"
