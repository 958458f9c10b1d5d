"""
``./bin/benchmark --sweep``: every connection level against squad and the servers it is compared
with (L{benchmark.sweep.targets}), then ``var/benchmark/<UTC time>/report.md`` with charts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from benchmark.args import Settings, format_duration
from benchmark.figures import LevelResult, SweepResults, TargetResult
from benchmark.load.runner import BENCHMARK_DIR, LoadFailed
from benchmark.original_tool.figures import as_level
from benchmark.original_tool.report import console_report as original_tool_report
from benchmark.original_tool.run import SWEEP_DESCRIPTION, SWEEP_LABEL, measure_original
from benchmark.report.machine import machine_info, versions
from benchmark.report.markdown import write_report
from benchmark.report.tables import console_report
from benchmark.run.measure import measure, say
from benchmark.run.service import ServiceDown, check_health, flush
from benchmark.run.store import database_version
from benchmark.sweep.running import running
from benchmark.sweep.targets import Target, TargetContext, select_targets

__all__ = ["run_sweep"]

ROOT = BENCHMARK_DIR.parent
PAUSE_BETWEEN_RUNS = 2.0


def _sweep_target(
    target: Target,
    settings: Settings,
    folder: Path,
    out: Callable[[str], None],
    tell: Callable[[str], None],
) -> TargetResult:
    levels: list[LevelResult] = []
    try:
        log = folder / "logs" / f"{target.label}.log"
        with running(target, log, settings.service_pid) as pid:
            for connections in settings.levels:
                tell(
                    f"-- {target.label}: {connections} connections for "
                    f"{format_duration(settings.duration)}"
                )
                result = measure(
                    target.url,
                    connections,
                    settings.duration,
                    settings.mongo_uri,
                    target.database,
                    drain=settings.drain,
                    service_pid=pid,
                    progress=tell is say,
                    tell=tell,
                )
                levels.append(result)
                out(
                    console_report(
                        f"{target.label} ({target.url})",
                        result,
                        target.database,
                    )
                )
                if connections != settings.levels[-1]:
                    time.sleep(PAUSE_BETWEEN_RUNS)
            if target.command is None:
                # A service the sweep does not stop would go on with its backlog of slow
                # work while the next targets are measured, on the same database: drop it.
                warning = flush(target.url)
                if warning:
                    tell(f"warning: {warning}")
    except (ServiceDown, LoadFailed) as error:
        tell(f"!! {target.label} stopped: {error}")
        return TargetResult(target.label, target.description, target.url, levels, str(error))
    return TargetResult(target.label, target.description, target.url, levels)


def _sweep_original_tool(
    squad: Target,
    settings: Settings,
    out: Callable[[str], None],
    tell: Callable[[str], None],
) -> TargetResult:
    """With --original-tool: the original challenge's client at every level against squad."""
    label = SWEEP_LABEL
    levels: list[LevelResult] = []
    try:
        for connections in settings.levels:
            tell(f"-- {label}: {connections} connections for {format_duration(settings.duration)}")
            run = measure_original(
                squad.url, connections, settings.duration, progress=tell is say, tell=tell
            )
            levels.append(as_level(run))
            out(original_tool_report(squad.url, run))
            if connections != settings.levels[-1]:
                time.sleep(PAUSE_BETWEEN_RUNS)
        warning = flush(squad.url)
        if warning:
            tell(f"warning: {warning}")
    except (ServiceDown, LoadFailed) as error:
        tell(f"!! {label} stopped: {error}")
        return TargetResult(label, SWEEP_DESCRIPTION, squad.url, levels, str(error))
    return TargetResult(label, SWEEP_DESCRIPTION, squad.url, levels)


def run_sweep(
    settings: Settings,
    environ: Mapping[str, str],
    root: Path = ROOT,
    out: Callable[[str], None] = print,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    tell: Callable[[str], None] = say,
) -> Path:
    """
    Run the sweep and write its report; return the report's folder. Tables go to C{out},
    progress to C{tell} (the load generator's live display too, unless C{tell} is replaced).
    """
    context = TargetContext(settings, environ)
    targets = select_targets(settings.targets, context)
    # Fail before anything starts if a target the sweep does not start itself is not there.
    for target in targets:
        if target.command is None:
            try:
                check_health(target.url)
            except ServiceDown as error:
                others = ",".join(t.label for t in targets if t is not target)
                hint = f" To sweep without it: SWEEP_TARGETS={others}." if others else ""
                raise ServiceDown(f"{target.label}: {error}{hint}") from None
    started = now()
    folder = root / "var" / "benchmark" / started.strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    runs = len(targets) * len(settings.levels)
    if settings.original_tool and any(target.label == "squad" for target in targets):
        runs += len(settings.levels)
    tell(
        f"sweep: {', '.join(t.label for t in targets)} at "
        f"{', '.join(str(level) for level in settings.levels)} connections, "
        f"{format_duration(settings.duration)} each: {runs} runs, about "
        f"{format_duration(round(runs * (settings.duration + 6) / 60) * 60 or 60)}"
        + (" plus the drains" if settings.drain else "")
    )
    results = []
    for target in targets:
        tell(f"== {target.label}: {target.description}")
        results.append(_sweep_target(target, settings, folder, out, tell))
        if settings.original_tool and target.label == "squad":
            results.append(_sweep_original_tool(target, settings, out, tell))
    command = "./bin/benchmark --sweep " + format_duration(settings.duration)
    if settings.drain:
        command += " --drain"
    if settings.original_tool:
        command += " --original-tool"
    if settings.targets is not None:
        command = f"SWEEP_TARGETS={','.join(settings.targets)} " + command
    if environ.get("SWEEP_LEVELS"):
        command = f"SWEEP_LEVELS={','.join(map(str, settings.levels))} " + command
    write_report(
        SweepResults(
            started=started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            command=command,
            duration=settings.duration,
            levels=list(settings.levels),
            machine=machine_info(),
            versions=versions(database_version(settings.mongo_uri, settings.database)),
            targets=results,
            notes=[
                f"squad's own settings are whatever the service at {settings.url} was started "
                "with (./bin/dev: squad's defaults, slow step 5-15 s).",
            ],
        ),
        folder,
    )
    if not any(target.levels for target in results):
        raise LoadFailed(f"no target could be measured; the logs are in {folder}")
    return folder
