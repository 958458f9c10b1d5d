"""Benchmark figures built by hand for the tooling tests (no load, no network): a recorded
sweep, the targets and levels of made-up ones, and a clock that moves only when slept."""

from __future__ import annotations

from benchmark.figures import LevelResult, LoadFigures, StoreCheck, SweepResults, TargetResult
from benchmark.report.verdicts import verdicts

__all__ = [
    "FakeTime",
    "level_result",
    "load_figures",
    "recorded_sweep",
    "sweep",
    "target",
    "verdicts_of",
]


def load_figures(
    connections: int, rps: float, p99: float, ok: int, timeouts: int = 0
) -> LoadFigures:
    """A 30 s load at ``connections`` answering ``ok`` 201s at ``rps`` with a p99 of ``p99`` ms
    (the other percentiles in proportion), and ``timeouts`` requests timed out."""
    return LoadFigures(
        connections=connections,
        duration=30.0,
        sent=ok + timeouts + connections,
        ok=ok,
        non2xx=0,
        errors=timeouts,
        timeouts=timeouts,
        requests_per_second=rps,
        p50_ms=p99 / 4,
        p90_ms=p99 / 2,
        p99_ms=p99,
        max_ms=p99 * 2,
        mean_ms=p99 / 3,
        status_codes={"201": ok},
        loadgen_cpu_seconds=9.0,
        elapsed=30.0,
    )


def level_result(
    load: LoadFigures, stored: int | None, rss: float | None = 120.0, database_cpu: float = 12.0
) -> LevelResult:
    """One level of a sweep: ``load``, then a PASS with ``stored`` users (None: the target
    stores nothing, and its database CPU is not read), a drain, ``rss`` MiB, 30 s of service
    CPU over three processes and ``database_cpu`` s of the database's."""
    check = (
        StoreCheck("n/a", "the target stores nothing")
        if stored is None
        else StoreCheck("PASS", f"{stored} users stored for {load.ok} 2xx answers", stored)
    )
    return LevelResult(
        load=load,
        check=check,
        drain_seconds=14.5 if stored is not None else None,
        drained=True if stored is not None else None,
        service_rss_mb=rss,
        service_cpu_seconds=30.0,
        database_cpu_seconds=None if stored is None else database_cpu,
        other_cpu_seconds=1.5,
        service_processes=3,
    )


def recorded_sweep() -> SweepResults:
    """A sweep at two levels against three targets, one of which failed to start."""
    squad = TargetResult(
        "squad",
        "squad, as running at URL",
        "http://localhost:9000",
        [
            level_result(load_figures(25, 2345.6, 12.34, 70_368), 70_368),
            level_result(load_figures(1000, 2100.0, 987.6, 63_000), 63_050),
        ],
    )
    baseline = TargetResult(
        "baseline",
        "BASELINE, the original service's behaviour",
        "http://127.0.0.1:9100",
        [
            level_result(load_figures(25, 2.5, 9876.0, 75, timeouts=40), 140),
            level_result(load_figures(1000, 66.0, 9950.0, 1980, timeouts=1500), 4000),
        ],
    )
    broken = TargetResult(
        "reference-node",
        "REFERENCE: express",
        "http://127.0.0.1:9300",
        [],
        error="the server for http://127.0.0.1:9300 exited before it answered",
    )
    return SweepResults(
        started="2025-11-28 04:50:00 UTC",
        command="./bin/benchmark --sweep 30s",
        duration=30.0,
        levels=[25, 1000],
        machine={"CPUs": "2", "CPU model": "Test CPU @ 3.00GHz", "memory": "23.5 GiB"},
        versions={"Python": "3.11.9", "autocannon": "9.0.0", "database": "FerretDB v1.24.2"},
        targets=[squad, baseline, broken],
        notes=["a note for the reader"],
    )


def sweep(squad: TargetResult, *others: TargetResult) -> SweepResults:
    """``recorded_sweep`` at 25 and 1000 connections, against these targets instead."""
    return SweepResults(
        **{**recorded_sweep().__dict__, "targets": [squad, *others], "levels": [25, 1000]}
    )


def target(
    label: str,
    rps25: float,
    p99_25: float,
    rps1000: float,
    p99_1000: float,
    database_cpu: tuple[float, float] = (12.0, 12.0),
) -> TargetResult:
    """``label`` at 25 and 1000 connections with these requests/s and p99s, 10,000 2xx at each
    level, all stored (but by the ceiling, which stores nothing), 350 MiB after the second,
    and ``database_cpu`` seconds of the database's CPU at each level (so 12 s is 1.2 ms per
    sign-up)."""
    stored = None if label == "ceiling" else 10_000
    return TargetResult(
        label,
        label,
        "http://127.0.0.1:1",
        [
            level_result(
                load_figures(25, rps25, p99_25, 10_000), stored, database_cpu=database_cpu[0]
            ),
            level_result(
                load_figures(1000, rps1000, p99_1000, 10_000, timeouts=0),
                stored,
                rss=350.0,
                database_cpu=database_cpu[1],
            ),
        ],
    )


def verdicts_of(squad: TargetResult, *others: TargetResult) -> dict[str, tuple[bool, str]]:
    """The report's verdicts on ``sweep(squad, *others)``: (met, measured) by target."""
    return {v.target: (v.met, v.measured) for v in verdicts(sweep(squad, *others))}


class FakeTime:
    """A clock that moves only when slept."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
