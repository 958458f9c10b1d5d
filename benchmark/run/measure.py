"""
One measured run, the original tool's procedure with the checks around it: GET /health, DELETE
/collections, the load, then the nothing-lost check (and, with ``--drain``, the wait until every
user is processed). Used by a single ``./bin/benchmark`` and by every level of a sweep.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from benchmark.figures import LevelResult, StoreCheck
from benchmark.load.runner import run_load
from benchmark.run.procs import service_processes
from benchmark.run.service import check_health, flush
from benchmark.run.store import (
    DRAIN_LIMIT,
    MongoStore,
    StoreUnavailable,
    nothing_lost,
    wait_for_drain,
)
from harness.processes import cpu_seconds, listening_pids, machine_busy_seconds, rss_megabytes

__all__ = ["is_local", "measure", "say"]


def say(message: str) -> None:
    """A line for the person watching, on stderr (stdout carries the tables and the path)."""
    print(message, file=sys.stderr, flush=True)


def is_local(host: str | None) -> bool:
    """Whether C{host} is this machine, so its processes can be found in /proc."""
    return bool(host) and (host in ("localhost", "::1") or str(host).startswith("127."))


def _port(url: str, default: int) -> tuple[str | None, int]:
    parts = urlsplit(url)
    try:
        return parts.hostname, parts.port or default
    except ValueError:
        return parts.hostname, default


def _open_store(mongo_uri: str, database: str) -> tuple[MongoStore | None, str | None]:
    try:
        return MongoStore(mongo_uri, database), None
    except StoreUnavailable as error:
        return None, str(error)


def measure(
    url: str,
    connections: int,
    duration: float,
    mongo_uri: str,
    database: str | None,
    drain: bool = False,
    service_pid: int | None = None,
    progress: bool = True,
    drain_limit: float = DRAIN_LIMIT,
    tell: Callable[[str], None] = say,
    rate: int | None = None,
    watch: Callable[[str], None] | None = None,
) -> LevelResult:
    """
    Run the original tool's procedure against C{url} and measure around it. C{database} is where the
    service stores its users (None: it stores nothing, the check does not apply). C{rate}
    offers that many requests/s in total (None: as many as the connections allow); C{watch}
    hears ``"load"`` right before the load starts and ``"loaded"`` right after it ends. Raises
    L{benchmark.run.service.ServiceDown} when the service does not answer GET /health, and
    L{benchmark.load.runner.LoadFailed} when the load generator cannot run.
    """
    check_health(url)
    warning = flush(url)
    if warning:
        tell(f"warning: {warning}")

    store: MongoStore | None = None
    before: int | None = None
    skipped = "the target stores nothing, so there is nothing to count"
    if database is not None:
        store, problem = _open_store(mongo_uri, database)
        if store is not None:
            try:
                before = store.count_users()
            except StoreUnavailable as error:
                problem = str(error)
        if before is None:
            skipped = f"cannot read the database: {problem}"
            tell(f"warning: the nothing-lost check will be skipped: {problem}")

    host, port = _port(url, 80)
    pids = service_processes(port, service_pid) if is_local(host) else set()
    db_host, db_port = _port(mongo_uri, 27017)
    # A target that stores nothing (the ceiling) gets no database column: whatever the database
    # server does meanwhile (another service's background work) is a disturbance, counted in
    # "everything else" so the report flags the run.
    db_pids = (
        listening_pids(db_port)
        if database is not None and is_local(db_host) and "," not in mongo_uri
        else set()
    )
    service_cpu_before = cpu_seconds(pids)
    db_cpu_before = cpu_seconds(db_pids)
    busy_before = machine_busy_seconds()

    if watch is not None:
        watch("load")
    load = run_load(url, connections, duration, progress=progress, rate=rate)
    if watch is not None:
        watch("loaded")

    busy_after = machine_busy_seconds()
    service_cpu_after = cpu_seconds(pids)
    db_cpu_after = cpu_seconds(db_pids)
    # Read the processes again: a supervisor may have replaced a worker during the run.
    now_pids = service_processes(port, service_pid) if is_local(host) else set()
    rss = rss_megabytes(now_pids)

    check = StoreCheck("n/a", skipped) if database is None else StoreCheck("SKIPPED", skipped)
    drain_seconds: float | None = None
    drained: bool | None = None
    try:
        if store is not None and before is not None:
            try:
                check = nothing_lost(before, store.count_users(), load.ok)
            except StoreUnavailable as error:
                check = StoreCheck("SKIPPED", str(error))
            if drain:
                last_shown = [0.0]

                def show(elapsed: float, remaining: int) -> None:
                    if remaining and elapsed - last_shown[0] >= 1.0:
                        last_shown[0] = elapsed
                        tell(f"drain: {remaining:,} users not processed yet after {elapsed:.0f} s")

                try:
                    outcome = wait_for_drain(store, limit=drain_limit, report=show)
                    drain_seconds, drained = outcome.seconds, outcome.drained
                except StoreUnavailable as error:
                    tell(f"warning: the drain could not be measured: {error}")
    finally:
        if store is not None:
            store.close()

    def spent(after: float | None, before: float | None) -> float | None:
        return None if after is None or before is None else max(0.0, after - before)

    service_cpu = spent(service_cpu_after, service_cpu_before)
    database_cpu = spent(db_cpu_after, db_cpu_before)
    busy = spent(busy_after, busy_before)
    other_cpu = (
        None
        if busy is None
        else max(
            0.0, busy - (service_cpu or 0.0) - (database_cpu or 0.0) - load.loadgen_cpu_seconds
        )
    )
    return LevelResult(
        load=load,
        check=check,
        drain_seconds=drain_seconds,
        drained=drained,
        service_rss_mb=rss,
        service_cpu_seconds=service_cpu,
        database_cpu_seconds=database_cpu,
        other_cpu_seconds=other_cpu,
        service_processes=len(now_pids) if now_pids else None,
    )
