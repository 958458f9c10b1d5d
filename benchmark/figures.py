"""The figures a run measures, and their JSON form (``results.json`` beside every report)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "ORIGINAL_TOOL_LABEL",
    "LevelResult",
    "LoadFigures",
    "StoreCheck",
    "SweepResults",
    "TargetResult",
    "level_to_dict",
    "sweep_from_json",
    "sweep_to_json",
]

# The label of a sweep's row that the original challenge's client measured against squad: its
# bodyless first requests are refused by design, so the verdicts count its non-2xx apart.
ORIGINAL_TOOL_LABEL = "squad, original tool"


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class LoadFigures:
    """
    What the load generator measured in one run, with autocannon's meanings: C{errors} counts
    every failed request, timeouts included (as the original tool's table did);
    C{requests_per_second} is completed responses per second, whatever their status; latencies
    cover completed responses.
    """

    connections: int
    duration: float
    sent: int
    ok: int
    non2xx: int
    errors: int
    timeouts: int
    requests_per_second: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None = None
    status_codes: dict[str, int] = field(default_factory=dict)
    loadgen_cpu_seconds: float = 0.0
    elapsed: float = 0.0
    # Only for runs of the original tool (--original-tool): how many non-2xx answered a request
    # sent without a body (each connection's first), which the verdicts set apart.
    bodyless_non2xx: int | None = None

    @property
    def failures(self) -> int:
        """Requests that did not get a 2xx: non-2xx answers plus errors (timeouts included)."""
        return self.non2xx + self.errors

    @property
    def loadgen_cpu_percent(self) -> float:
        """The load generator's CPU use during the run, in percent of one core."""
        return 100.0 * self.loadgen_cpu_seconds / self.elapsed if self.elapsed > 0 else 0.0

    @classmethod
    def from_runner(cls, data: Mapping[str, Any]) -> LoadFigures:
        """The figures from the JSON object ``runner.js`` prints when a run ends."""
        latency = data.get("latencyMs") or {}
        return cls(
            connections=int(data["connections"]),
            duration=float(data["duration"]),
            sent=int(data["sent"]),
            ok=int(data["ok"]),
            non2xx=int(data["non2xx"]),
            errors=int(data["errors"]),
            timeouts=int(data["timeouts"]),
            requests_per_second=float(data["requestsPerSecond"]),
            p50_ms=_optional_float(latency.get("p50")),
            p90_ms=_optional_float(latency.get("p90")),
            p99_ms=_optional_float(latency.get("p99")),
            max_ms=_optional_float(latency.get("max")),
            mean_ms=_optional_float(latency.get("mean")),
            status_codes={str(k): int(v) for k, v in (data.get("statusCodes") or {}).items()},
            loadgen_cpu_seconds=float(data.get("loadGeneratorCpuSeconds", 0.0)),
            elapsed=float(data.get("elapsed", data["duration"])),
        )


@dataclass(frozen=True)
class StoreCheck:
    """
    The nothing-lost check: users the run left in the database against its 2xx answers.
    C{verdict} is C{PASS}, C{FAIL} or C{SKIPPED} (no database to read, or it did not answer).
    """

    verdict: str
    detail: str
    stored: int | None = None


def _per_signup(seconds: float | None, signups: int) -> float | None:
    return None if seconds is None or signups <= 0 else 1000.0 * seconds / signups


@dataclass(frozen=True)
class LevelResult:
    """One run at one connection level, with what was measured around it."""

    load: LoadFigures
    check: StoreCheck
    drain_seconds: float | None = None
    drained: bool | None = None
    service_rss_mb: float | None = None
    service_cpu_seconds: float | None = None
    database_cpu_seconds: float | None = None
    other_cpu_seconds: float | None = None
    service_processes: int | None = None

    @property
    def service_cpu_percent(self) -> float | None:
        """The service's CPU use during the run in percent of one core (all its processes)."""
        if self.service_cpu_seconds is None or self.load.elapsed <= 0:
            return None
        return 100.0 * self.service_cpu_seconds / self.load.elapsed

    @property
    def database_cpu_percent(self) -> float | None:
        """The database server's CPU use during the run in percent of one core."""
        if self.database_cpu_seconds is None or self.load.elapsed <= 0:
            return None
        return 100.0 * self.database_cpu_seconds / self.load.elapsed

    @property
    def service_cpu_ms_per_signup(self) -> float | None:
        """
        The service's CPU time during the run (all its processes) per 2xx sign-up, in
        milliseconds; None when it was not read or nothing got a 2xx.
        """
        return _per_signup(self.service_cpu_seconds, self.load.ok)

    @property
    def database_cpu_ms_per_signup(self) -> float | None:
        """
        The database server's CPU time during the run per 2xx sign-up, in milliseconds; None
        when it was not read (a target that stores nothing) or nothing got a 2xx.
        """
        return _per_signup(self.database_cpu_seconds, self.load.ok)

    @property
    def other_cpu_percent(self) -> float | None:
        """
        CPU used during the run by everything else on the machine (other processes, the
        hypervisor), in percent of one core: high values mean the figures are not
        representative of this machine.
        """
        if self.other_cpu_seconds is None or self.load.elapsed <= 0:
            return None
        return 100.0 * self.other_cpu_seconds / self.load.elapsed


@dataclass(frozen=True)
class TargetResult:
    """A sweep over every level against one server (squad, the baseline or a reference)."""

    label: str
    description: str
    url: str
    levels: list[LevelResult]
    error: str | None = None


@dataclass(frozen=True)
class SweepResults:
    """Everything a sweep report shows."""

    started: str
    command: str
    duration: float
    levels: list[int]
    machine: dict[str, str]
    versions: dict[str, str]
    targets: list[TargetResult]
    notes: list[str] = field(default_factory=list)


def level_to_dict(level: LevelResult) -> dict[str, Any]:
    """
    C{level} as a JSON-ready mapping: its fields, and the CPU per 2xx sign-up derived from them
    (C{service_cpu_ms_per_signup}, C{database_cpu_ms_per_signup}) for a reader of the file.
    """
    return {
        **asdict(level),
        "service_cpu_ms_per_signup": level.service_cpu_ms_per_signup,
        "database_cpu_ms_per_signup": level.database_cpu_ms_per_signup,
    }


def sweep_to_json(results: SweepResults) -> str:
    """C{results} as JSON, for ``results.json``."""
    data = asdict(results)
    for target, written in zip(results.targets, data["targets"], strict=True):
        written["levels"] = [level_to_dict(level) for level in target.levels]
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _level(data: Mapping[str, Any]) -> LevelResult:
    load = dict(data["load"])
    return LevelResult(
        load=LoadFigures(**load),
        check=StoreCheck(**data["check"]),
        drain_seconds=_optional_float(data.get("drain_seconds")),
        drained=data.get("drained"),
        service_rss_mb=_optional_float(data.get("service_rss_mb")),
        service_cpu_seconds=_optional_float(data.get("service_cpu_seconds")),
        database_cpu_seconds=_optional_float(data.get("database_cpu_seconds")),
        other_cpu_seconds=_optional_float(data.get("other_cpu_seconds")),
        service_processes=data.get("service_processes"),
    )


def sweep_from_json(text: str) -> SweepResults:
    """The L{SweepResults} that L{sweep_to_json} wrote."""
    data = json.loads(text)
    return SweepResults(
        started=data["started"],
        command=data["command"],
        duration=float(data["duration"]),
        levels=[int(level) for level in data["levels"]],
        machine=dict(data["machine"]),
        versions=dict(data["versions"]),
        targets=[
            TargetResult(
                label=target["label"],
                description=target["description"],
                url=target["url"],
                levels=[_level(level) for level in target["levels"]],
                error=target.get("error"),
            )
            for target in data["targets"]
        ],
        notes=list(data.get("notes", [])),
    )
