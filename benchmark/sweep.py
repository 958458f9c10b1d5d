"""
``./bin/benchmark --sweep``: every connection level against squad and the servers it is compared
with, then ``var/benchmark/<UTC time>/report.md`` with charts.

The comparison targets are pluggable: L{TARGETS} maps a name to a function that describes the
target (L{Target}: a label, a URL, where it stores users, and the command that starts it when
the sweep should run it itself). Add an entry there to compare with something else;
``SWEEP_TARGETS`` picks among them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmark.args import Settings, UsageError, format_duration
from benchmark.figures import LevelResult, SweepResults, TargetResult
from benchmark.load import BENCHMARK_DIR, LoadFailed, node_binary
from benchmark.machine import machine_info, versions
from benchmark.report import console_report, write_report
from benchmark.run import measure, say
from benchmark.service import ServiceDown, check_health, flush, wait_until_healthy
from benchmark.store import database_version

__all__ = ["TARGETS", "Target", "TargetContext", "free_port", "run_sweep", "select_targets"]

ROOT = BENCHMARK_DIR.parent
PAUSE_BETWEEN_RUNS = 2.0


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """
    One server a sweep measures. C{command} None means it is already running at C{url} (squad,
    started with ./bin/dev); otherwise the sweep starts it before its first level and stops it
    after its last. C{database} None means it stores nothing (no nothing-lost check).
    """

    label: str
    description: str
    url: str
    database: str | None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    startup_limit: float = 60.0


@dataclass(frozen=True)
class TargetContext:
    """What a target's description may depend on."""

    settings: Settings
    environ: Mapping[str, str]
    port: Callable[[], int] = free_port


def _slow_env(environ: Mapping[str, str]) -> tuple[str, str]:
    # The comparison servers take the same slow-step range as squad (squad's own variables).
    return environ.get("SQUAD_SLOW_MIN") or "5", environ.get("SQUAD_SLOW_MAX") or "15"


def _squad(context: TargetContext) -> Target:
    return Target(
        label="squad",
        description="squad, as running at URL (start it with ./bin/dev)",
        url=context.settings.url,
        database=context.settings.database,
    )


def _baseline(context: TargetContext) -> Target:
    port = context.port()
    slow_min, slow_max = _slow_env(context.environ)
    return Target(
        label="baseline",
        description=(
            "BASELINE, the original service's behaviour: answers only after the slow step "
            f"({slow_min}-{slow_max} s); one process, Klein + txmongo (`benchmark/baseline/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_baseline",
        command=(
            sys.executable,
            "-m",
            "benchmark.baseline.server",
            "--port",
            str(port),
            "--mongo-uri",
            context.settings.mongo_uri,
            "--database",
            "squad_baseline",
            "--slow-min",
            slow_min,
            "--slow-max",
            slow_max,
        ),
    )


def _ceiling(context: TargetContext) -> Target:
    port = context.port()
    workers = (
        context.environ.get("SWEEP_CEILING_WORKERS")
        or context.environ.get("SQUAD_WORKERS")
        or str(os.cpu_count() or 1)
    )
    return Target(
        label="ceiling",
        description=(
            f"REFERENCE CEILING: bare Klein, parses the JSON and answers 201 with no I/O; "
            f"{workers} process{'' if workers == '1' else 'es'} on one port, as squad shares it "
            "(`benchmark/ceiling/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database=None,
        command=(
            sys.executable,
            "-m",
            "benchmark.ceiling.server",
            "--port",
            str(port),
            "--workers",
            workers,
        ),
    )


def _stored_workers(context: TargetContext) -> str:
    return (
        context.environ.get("SWEEP_STORED_WORKERS")
        or context.environ.get("SQUAD_WORKERS")
        or str(os.cpu_count() or 1)
    )


def _stored_command(context: TargetContext, port: int, database: str) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "benchmark.stored.server",
        "--port",
        str(port),
        "--workers",
        _stored_workers(context),
        "--mongo-uri",
        context.settings.mongo_uri,
        "--database",
        database,
    )


def _processes(count: str) -> str:
    return f"{count} process{'' if count == '1' else 'es'}"


def _stored(context: TargetContext) -> Target:
    port = context.port()
    return Target(
        label="stored",
        description=(
            "REFERENCE: the thinnest stored service, Klein + txmongo: parses the JSON, one "
            "insert_many per reactor turn, 201 after the acknowledgement; no validation, slow "
            f"step or password; {_processes(_stored_workers(context))} on one port, "
            "as squad shares it (`benchmark/stored/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_stored",
        command=_stored_command(context, port, "squad_stored"),
    )


def _stored_processed(context: TargetContext) -> Target:
    port = context.port()
    slow_min, slow_max = _slow_env(context.environ)
    return Target(
        label="stored-processed",
        description=(
            "REFERENCE: `stored` plus the one effect the slow step must have: each user marked "
            f"processed with a new date_updated {slow_min}-{slow_max} s after its insert, the "
            "users due in each 0.2 s in one update_many by _id; kept in memory only, not "
            f"durable; {_processes(_stored_workers(context))} on one port "
            "(`benchmark/stored/ --processed`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_stored_processed",
        command=(
            *_stored_command(context, port, "squad_stored_processed"),
            "--processed",
            "--slow-min",
            slow_min,
            "--slow-max",
            slow_max,
        ),
    )


def _node_target(context: TargetContext, label: str, workers: str | None) -> Target:
    port = context.port()
    slow_min, slow_max = _slow_env(context.environ)
    shape = (
        "one process"
        if workers is None
        else f"{_processes(workers)} on one port (node's cluster module)"
    )
    return Target(
        label=label,
        description=(
            "REFERENCE: idiomatic Node, express + the official mongodb driver; insert, answer "
            f"201, slow step fire-and-forget with setTimeout; {shape} "
            "(`benchmark/reference-node/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_reference",
        command=(node_binary(), str(BENCHMARK_DIR / "reference-node" / "server.js")),
        env={
            "PORT": str(port),
            "MONGO_URI": context.settings.mongo_uri,
            "DATABASE": "squad_reference",
            "SLOW_MIN": slow_min,
            "SLOW_MAX": slow_max,
            "WORKERS": workers or "1",
            # The same heap ceiling a production Node deployment would set for ~1000 connections.
            "NODE_OPTIONS": "--max-old-space-size=1024",
        },
    )


def _reference_node(context: TargetContext) -> Target:
    return _node_target(context, "reference-node", None)


def _reference_node_cluster(context: TargetContext) -> Target:
    workers = context.environ.get("SWEEP_NODE_WORKERS") or str(os.cpu_count() or 1)
    return _node_target(context, "reference-node-cluster", workers)


TARGETS: dict[str, Callable[[TargetContext], Target]] = {
    "squad": _squad,
    "baseline": _baseline,
    "ceiling": _ceiling,
    "stored": _stored,
    "stored-processed": _stored_processed,
    "reference-node": _reference_node,
    "reference-node-cluster": _reference_node_cluster,
}


def select_targets(
    names: tuple[str, ...] | None,
    context: TargetContext,
    known: Mapping[str, Callable[[TargetContext], Target]] = TARGETS,
) -> list[Target]:
    """The targets named in C{names} (all of C{known} when None), in the order given."""
    chosen = list(known) if names is None else list(names)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UsageError(
            f"SWEEP_TARGETS: unknown target {', '.join(unknown)}; choose among {', '.join(known)}"
        )
    return [known[name](context) for name in chosen]


@contextmanager
def running(target: Target, log_path: Path) -> Iterator[int | None]:
    """
    Start C{target} (if it has a command) in its own process group, its output in
    C{log_path}, wait until it answers GET /health, yield its process id; stop the whole group
    afterwards, whatever happened.
    """
    if target.command is None:
        pid = os.environ.get("SQUAD_PID")
        yield int(pid) if pid and pid.isdigit() else None
        return
    env = {**os.environ, **target.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            target.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(target.url, target.startup_limit, alive=lambda: process.poll() is None)
        yield process.pid
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            # The group may outlive its leader (workers): make sure they are gone too.
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


def _sweep_target(
    target: Target,
    settings: Settings,
    folder: Path,
    out: Callable[[str], None],
    tell: Callable[[str], None],
) -> TargetResult:
    levels: list[LevelResult] = []
    try:
        with running(target, folder / "logs" / f"{target.label}.log") as pid:
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
    from benchmark import original_tool

    label = original_tool.SWEEP_LABEL
    levels: list[LevelResult] = []
    try:
        for connections in settings.levels:
            tell(f"-- {label}: {connections} connections for {format_duration(settings.duration)}")
            run = original_tool.measure_original(
                squad.url, connections, settings.duration, progress=tell is say, tell=tell
            )
            levels.append(original_tool.as_level(run))
            out(original_tool.console_report(squad.url, run))
            if connections != settings.levels[-1]:
                time.sleep(PAUSE_BETWEEN_RUNS)
        warning = flush(squad.url)
        if warning:
            tell(f"warning: {warning}")
    except (ServiceDown, LoadFailed) as error:
        tell(f"!! {label} stopped: {error}")
        return TargetResult(label, original_tool.SWEEP_DESCRIPTION, squad.url, levels, str(error))
    return TargetResult(label, original_tool.SWEEP_DESCRIPTION, squad.url, levels)


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
