"""
``./bin/benchmark --rate R [connections] [duration]``: a fixed offered load, and how squad's
background work keeps up with it.

The load is the original tool's (``POST /users``, a new sign-up per request, 10 s timeout) but at R
requests/s in total (autocannon's ``overallRate``) instead of as many as the connections allow.
Around it, every L{SAMPLE_INTERVAL} seconds during the load and after it, until every user is
processed (at most L{WAIT_LIMIT} s), this records:

- squad's gauges from ``GET /metrics`` (L{METRICS}; a gauge squad does not export is reported
  as not available, never guessed);
- the size of the SQLite WAL of the service's database in the embedded database's data folder
  (FerretDB's SQLite backend keeps database ``D`` in ``D.sqlite``, its WAL in ``D.sqlite-wal``);
- the service's resident memory.

Like every run, it reads the CPU time of the service's processes and of the database server
during the load, and gives each per 2xx sign-up.

After the wait, one read of ``users`` gives the slow-step lag: ``date_updated - date_created``
of every processed user (squad stamps ``date_updated`` when the slow step ends; its finish
writer writes it with ``processed: true`` soon after), overall and per 10 s of ``date_created``,
and when the last slow step ended. The database is not read while the load runs: on FerretDB a
count is a scan of ``users``, which would take CPU from what is measured; after the load, once
/metrics says no slow step runs, a count every few seconds says when every user is processed.

The figures are printed and written to ``var/benchmark/<UTC time>/`` (``report.md`` and
``rate.json``), judged against the sustained-load targets (L{judge}).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from benchmark.args import Settings, format_duration
from benchmark.load.runner import BENCHMARK_DIR
from benchmark.rate.figures import RateRun
from benchmark.rate.lag import LagReport, lag_report, read_users
from benchmark.rate.report import console_text, write_rate_report
from benchmark.rate.sampling import METRICS, WAL_LEFT_OVER_BYTES, Sampler, wal_file
from benchmark.rate.wait import WaitOutcome, wait_until_processed
from benchmark.report.machine import machine_info, versions
from benchmark.report.tables import markdown_table
from benchmark.run.measure import measure, say
from benchmark.run.store import MongoStore, StoreUnavailable, database_version

__all__ = ["exit_status", "run_rate"]

ROOT = BENCHMARK_DIR.parent


def _slow_max(environ: Mapping[str, str]) -> float:
    try:
        return float(environ.get("SQUAD_SLOW_MAX") or 15.0)
    except ValueError:
        return 15.0


def run_rate(
    settings: Settings,
    environ: Mapping[str, str],
    root: Path = ROOT,
    out: Callable[[str], None] = print,
    tell: Callable[[str], None] = say,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[RateRun, Path]:
    """
    The ``--rate`` run of C{settings}: measure, wait, read the lag, print, write the report.
    Returns the run and its folder. Raises what L{benchmark.run.measure.measure} raises.
    """
    assert settings.rate is not None
    service_pid = settings.service_pid
    data_dir = Path(environ.get("SQUAD_DB_DATA") or root / "var" / "db")
    wal = wal_file(data_dir, settings.database)
    notes: list[str] = []
    if not data_dir.is_dir():
        notes.append(
            f"the database's data folder {data_dir} does not exist (SQUAD_DB_DATA points "
            "elsewhere): the WAL's size is not available"
        )
    started_at = now()
    window: dict[str, float] = {}
    sampler = Sampler(settings.url, wal, service_pid, started=lambda: window.get("load"))

    def watch(event: str) -> None:
        window[event] = time.time()
        if event == "load":
            sampler.sample("load")
            sampler.start()
        else:
            sampler.stop()
            sampler.sample("load")

    try:
        result = measure(
            settings.url,
            settings.connections,
            settings.duration,
            settings.mongo_uri,
            settings.database,
            service_pid=service_pid,
            tell=tell,
            rate=settings.rate,
            watch=watch,
        )
    finally:
        sampler.stop()
    load_start = window["load"]
    load_seconds = window["loaded"] - load_start

    wait: WaitOutcome | None = None
    wait_offset = 0.0
    lag: LagReport | None = None
    try:
        store = MongoStore(settings.mongo_uri, settings.database)
    except StoreUnavailable as error:
        store = None
        notes.append(f"the database could not be read: {error}")
    if store is not None:
        try:

            def show(elapsed: float, estimate: int | None, counted: int | None) -> None:
                metric = "n/a" if estimate is None else f"{estimate:,}"
                count = "" if counted is None else f", database count {counted:,}"
                since = elapsed + wait_offset
                tell(f"after the load: {since:.0f} s, not processed (metrics) {metric}{count}")

            wait_offset = time.time() - window["loaded"]
            wait = wait_until_processed(
                lambda: sampler.sample("after"), store.count_unprocessed, report=show
            )
            lag = lag_report(read_users(settings.mongo_uri, settings.database), load_start)
        except StoreUnavailable as error:
            notes.append(f"the database could not be read: {error}")
        finally:
            store.close()
    first_wal = sampler.samples[0].wal_bytes if sampler.samples else None
    if first_wal and first_wal >= WAL_LEFT_OVER_BYTES:
        # SQLite restarts the WAL from its beginning after a checkpoint without shrinking the
        # file, so its size is the largest the WAL has been since the file was last truncated.
        notes.append(
            f"the WAL file was already {first_wal / (1024 * 1024):,.1f} MiB when the load "
            "started: SQLite does not shrink it after a checkpoint, so its sizes are high-water "
            "marks since the file was last truncated (restart the database for a clean figure)"
        )
    if all(s.metrics.get(name) is None for s in sampler.samples for name in METRICS):
        notes.append(f"{settings.url}/metrics gave none of squad's gauges")
    command = f"./bin/benchmark --rate {settings.rate} {settings.connections} " + format_duration(
        settings.duration
    )
    run = RateRun(
        started=started_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        command=command,
        url=settings.url,
        database=settings.database,
        rate=settings.rate,
        connections=settings.connections,
        duration=settings.duration,
        slow_max=_slow_max(environ),
        load_seconds=load_seconds,
        result=result,
        samples=sampler.samples,
        wait=wait,
        lag=lag,
        wal=str(wal) if wal.exists() or data_dir.is_dir() else None,
        wait_offset=wait_offset,
        notes=notes,
    )
    folder = root / "var" / "benchmark" / started_at.strftime("%Y%m%dT%H%M%SZ")
    write_rate_report(run, folder)
    info = markdown_table(
        ["", ""],
        [
            [k, v]
            for k, v in {
                **machine_info(),
                **versions(database_version(settings.mongo_uri, settings.database)),
            }.items()
        ],
        numeric=False,
    )
    with (folder / "report.md").open("a") as report:
        report.write("## Machine and versions\n\n" + info + "\n")
    out(console_text(run, folder))
    return run, folder


def exit_status(run: RateRun) -> int:
    """0 when nothing was lost and every user got processed within the wait, else 1."""
    processed = run.wait is not None and run.wait.processed
    return 0 if run.result.check.verdict != "FAIL" and processed else 1
