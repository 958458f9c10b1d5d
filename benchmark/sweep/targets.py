"""
The servers a sweep measures: squad at ``URL``, and the baseline and references it starts itself.

The comparison targets are pluggable: L{TARGETS} maps a name to a function that describes the
target (L{Target}: a label, a URL, where it stores users, and the command that starts it when
the sweep should run it itself). Add an entry there to compare with something else;
``SWEEP_TARGETS`` picks among them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from benchmark.args import Settings, UsageError
from benchmark.load.runner import BENCHMARK_DIR, node_binary
from harness.probes import free_port

__all__ = ["TARGETS", "Target", "TargetContext", "select_targets"]


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
            f"({slow_min}-{slow_max} s); one process, Klein + txmongo "
            "(`benchmark/servers/baseline/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_baseline",
        command=(
            sys.executable,
            "-m",
            "benchmark.servers.baseline.server",
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
            "(`benchmark/servers/ceiling/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database=None,
        command=(
            sys.executable,
            "-m",
            "benchmark.servers.ceiling.server",
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
        "benchmark.servers.stored.server",
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
            "as squad shares it (`benchmark/servers/stored/`)"
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
            "(`benchmark/servers/stored/ --processed`)"
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
            "(`benchmark/servers/reference-node/`)"
        ),
        url=f"http://127.0.0.1:{port}",
        database="squad_reference",
        command=(node_binary(), str(BENCHMARK_DIR / "servers" / "reference-node" / "server.js")),
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
