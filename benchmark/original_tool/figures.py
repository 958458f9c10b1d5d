"""
What one run of the original challenge's client measured, and squad's own count of it.

The tool's figures come from the JSON that ``benchmark/load/original-tool/runner.js`` prints;
squad's count comes from two scrapes of its ``/metrics`` (``POST /users`` answers by status,
error answers by machine code), one just before the load and one just after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.figures import LevelResult, LoadFigures, StoreCheck

__all__ = [
    "OriginalRun",
    "OriginalToolFigures",
    "Samples",
    "SquadView",
    "as_level",
    "is_2xx",
    "metric_samples",
    "squad_view",
]

# The squad counters read from /metrics, by what they say.
_REQUESTS = "squad_http_requests"
_ERRORS = "squad_http_errors"
_REFUSED = "squad_http_refused_connections"
_TIMED_OUT = "squad_http_request_timeouts"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def is_2xx(status: str) -> bool:
    """Whether an HTTP status (as the tool reports it, a string) is a success."""
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
        return sum(n for code, n in self.bodyless_status_codes.items() if not is_2xx(code))

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


def as_level(run: OriginalRun) -> LevelResult:
    """A sweep row for C{run}: its figures, no database check (the original made none)."""
    return LevelResult(
        load=run.figures.as_load(),
        check=StoreCheck("n/a", "the original tool checks nothing in the database"),
    )
