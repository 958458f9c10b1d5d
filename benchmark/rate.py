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

import json
import math
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmark.args import Settings, format_duration
from benchmark.figures import LevelResult, level_to_dict
from benchmark.hash_drain import parse_metrics
from benchmark.load import BENCHMARK_DIR
from benchmark.machine import machine_info, versions
from benchmark.procs import rss_megabytes, service_processes
from benchmark.report import (
    CPU_COLUMNS,
    EXTRA_COLUMNS,
    SEED_COLUMNS,
    box_table,
    console_report,
    cpu_ms,
    cpu_row,
    load_row,
    markdown_table,
)
from benchmark.run import is_local, measure, say
from benchmark.store import MongoStore, StoreUnavailable, database_version

__all__ = [
    "BUCKET_SECONDS",
    "METRICS",
    "Judgement",
    "LagFigures",
    "LagReport",
    "Sample",
    "WaitOutcome",
    "judge",
    "lag_report",
    "percentile",
    "run_rate",
    "steps_in_flight",
    "unprocessed_from_metrics",
    "wait_until_processed",
    "wal_file",
]

ROOT = BENCHMARK_DIR.parent
SAMPLE_INTERVAL = 2.0
# Once no slow step runs, the database is counted this often until it says 0: results still
# queued for writing, work stored for later adoption and retries are not all in /metrics.
RECOUNT_INTERVAL = 4.0
WAIT_LIMIT = 600.0
BUCKET_SECONDS = 10.0

SLOW_STEPS_IN_MEMORY = "squad_slow_steps_in_memory"
SLOW_STEPS_RUNNING = "squad_slow_steps_running"
HASH_BACKLOG = "squad_password_hash_backlog"
HASH_OLDEST = "squad_password_hash_oldest_age_seconds"
FINISH_BACKLOG = "squad_finish_writes_backlog"
SLOW_OLDEST = "squad_slow_step_oldest_age_seconds"
METRICS = (
    SLOW_STEPS_IN_MEMORY,
    SLOW_STEPS_RUNNING,
    HASH_BACKLOG,
    HASH_OLDEST,
    FINISH_BACKLOG,
    SLOW_OLDEST,
)

# The sustained-load targets.
MAX_P99_MS = 50.0
LAG_MARGIN_SECONDS = 5.0
MAX_PROCESSED_AFTER_SECONDS = 30.0
MAX_WAL_BYTES = 64 * 1024 * 1024
MAX_RSS_MB = 400.0
# A WAL file larger than this when the load starts is left from earlier work, and said so.
WAL_LEFT_OVER_BYTES = 1024 * 1024


# --- samples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """
    One reading. C{at} is seconds since the load started (negative before it), C{phase}
    ``load`` or ``after``; a metric squad does not export, or a /metrics that did not answer,
    is None, as are an absent WAL and unknown memory.
    """

    at: float
    phase: str
    metrics: dict[str, float | None]
    wal_bytes: int | None
    rss_mb: float | None


def read_metrics(url: str, timeout: float = 2.0) -> dict[str, float] | None:
    """squad's samples from ``GET <url>/metrics`` by name; None when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as answer:
            return parse_metrics(answer.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def wal_file(data_dir: Path, database: str) -> Path:
    """Where FerretDB's SQLite backend keeps the WAL of C{database}."""
    return data_dir / f"{database}.sqlite-wal"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def unprocessed_from_metrics(metrics: Mapping[str, float | None]) -> int | None:
    """
    What /metrics can say about users not yet processed in the database: slow steps in flight
    plus finished results not yet written. Without the running gauge, the users held in memory
    stand in (an upper bound: they include users waiting only for their password hash). None
    when squad exports neither. Users stored for later adoption and users waiting to retry
    are invisible here, which is why a database count confirms a zero.
    """
    finish = metrics.get(FINISH_BACKLOG)
    steps = metrics.get(SLOW_STEPS_RUNNING)
    if steps is None:
        steps = metrics.get(SLOW_STEPS_IN_MEMORY)
    if steps is None and finish is None:
        return None
    return int((steps or 0) + (finish or 0))


def steps_in_flight(metrics: Mapping[str, float | None]) -> int | None:
    """
    Slow steps still running, by /metrics; without that gauge, the users held in memory (an
    upper bound). None when squad exports neither. The finish-writes backlog is left out: it
    also carries password hashes, written one by one while the hash backlog drains.
    """
    steps = metrics.get(SLOW_STEPS_RUNNING)
    if steps is None:
        steps = metrics.get(SLOW_STEPS_IN_MEMORY)
    return None if steps is None else int(steps)


class Sampler:
    """Reads /metrics, the WAL's size and the service's memory; in a thread during the load."""

    def __init__(
        self,
        url: str,
        wal: Path | None,
        service_pid: int | None,
        started: Callable[[], float | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.wal = wal
        self.samples: list[Sample] = []
        self._service_pid = service_pid
        self._started = started
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        parts = urlsplit(url)
        self._host = parts.hostname
        self._port = parts.port or 80

    def sample(self, phase: str) -> Sample:
        """Take one reading now and keep it."""
        found = read_metrics(self.url)
        metrics = {name: None if found is None else found.get(name) for name in METRICS}
        rss = None
        if is_local(self._host):
            rss = rss_megabytes(service_processes(self._port, self._service_pid))
        start = self._started()
        now = self._clock()
        reading = Sample(
            at=0.0 if start is None else now - start,
            phase=phase,
            metrics=metrics,
            wal_bytes=None if self.wal is None else _size(self.wal),
            rss_mb=rss,
        )
        self.samples.append(reading)
        return reading

    def start(self, interval: float = SAMPLE_INTERVAL) -> None:
        """Sample every C{interval} seconds in a thread until L{stop}."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.sample("load")

        self._thread = threading.Thread(target=loop, name="rate-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after the reading in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --- waiting for the backlog -----------------------------------------------------------------


@dataclass(frozen=True)
class WaitOutcome:
    """
    How the wait after the load ended: C{seconds} after it started, whether every user was
    processed, the last database count (None: never counted) and whether the limit cut it.
    """

    seconds: float
    processed: bool
    remaining: int | None
    gave_up: bool


def wait_until_processed(
    sample: Callable[[], Sample],
    count_unprocessed: Callable[[], int],
    limit: float = WAIT_LIMIT,
    interval: float = SAMPLE_INTERVAL,
    recount: float = RECOUNT_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[float, int | None, int | None], None] | None = None,
) -> WaitOutcome:
    """
    Sample every C{interval} seconds; once /metrics says no slow step runs (or squad exports
    no such gauge), count the unprocessed users in the database, at most every C{recount}
    seconds, until that count is zero or C{limit} seconds have passed. C{report} hears
    (elapsed, unprocessed by /metrics, last database count) after every sample.
    """
    started = clock()
    last_count: int | None = None
    counted_at: float | None = None
    while True:
        reading = sample()
        elapsed = clock() - started
        estimate = unprocessed_from_metrics(reading.metrics)
        steps = steps_in_flight(reading.metrics)
        if (steps is None or steps == 0) and (
            counted_at is None or elapsed - counted_at >= recount
        ):
            last_count = count_unprocessed()
            counted_at = elapsed
            elapsed = clock() - started
            if last_count == 0:
                if report is not None:
                    report(elapsed, estimate, last_count)
                return WaitOutcome(elapsed, True, 0, False)
        if report is not None:
            report(elapsed, estimate, last_count)
        if elapsed >= limit:
            return WaitOutcome(elapsed, False, last_count, True)
        sleep(interval)


# --- the lag, from one read of users ---------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank C{p}th percentile of C{ordered} (sorted, not empty)."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class LagFigures:
    """Slow-step lags in seconds of C{processed} users, of C{created} users in all."""

    created: int
    processed: int
    p50: float | None
    p99: float | None
    max: float | None

    @property
    def unprocessed(self) -> int:
        return self.created - self.processed

    @classmethod
    def of(cls, created: int, lags: list[float]) -> LagFigures:
        ordered = sorted(lags)
        if not ordered:
            return cls(created, 0, None, None, None)
        return cls(
            created, len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1]
        )


@dataclass(frozen=True)
class Bucket:
    """The users created from C{start} to C{end} seconds after the load started."""

    start: float
    end: float
    lag: LagFigures


@dataclass(frozen=True)
class LagReport:
    """
    The lag overall and per bucket of C{date_created}, and C{last_processed}: the latest
    C{date_updated} of a processed user, in seconds since the load started.
    """

    overall: LagFigures
    buckets: list[Bucket]
    last_processed: float | None
    # Users without a readable date_created (not squad's documents): left out of the figures.
    undated: int = 0


def _seconds(value: object) -> float | None:
    """Epoch seconds of a BSON date as pymongo returns it (naive datetimes are UTC)."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def lag_report(
    users: Iterable[Mapping[str, Any]], load_started: float, bucket: float = BUCKET_SECONDS
) -> LagReport:
    """
    The slow-step lag of C{users} (documents with C{date_created}, C{date_updated},
    C{processed}): C{date_updated - date_created} of the processed ones, overall and per
    C{bucket} seconds of C{date_created} counted from C{load_started} (epoch seconds; a user
    created before it falls in the first bucket).
    """
    all_lags: list[float] = []
    by_bucket: dict[int, tuple[list[int], list[float]]] = {}
    created = 0
    undated = 0
    last: float | None = None
    for user in users:
        born = _seconds(user.get("date_created"))
        if born is None:
            undated += 1
            continue
        created += 1
        index = max(0, int((born - load_started) // bucket))
        count, lags = by_bucket.setdefault(index, ([0], []))
        count[0] += 1
        if user.get("processed") is True:
            updated = _seconds(user.get("date_updated"))
            if updated is None:
                continue
            lag = max(0.0, updated - born)
            lags.append(lag)
            all_lags.append(lag)
            last = updated if last is None else max(last, updated)
    buckets = [
        Bucket(index * bucket, (index + 1) * bucket, LagFigures.of(count[0], lags))
        for index, (count, lags) in sorted(by_bucket.items())
    ]
    return LagReport(
        overall=LagFigures.of(created, all_lags),
        buckets=buckets,
        last_processed=None if last is None else last - load_started,
        undated=undated,
    )


def read_users(uri: str, database: str) -> list[dict[str, Any]]:
    """Every user's dates and C{processed}, in one pass over C{users}."""
    # A full read of a few hundred thousand users takes longer than a count.
    store = MongoStore(uri, database, socket_timeout=300.0)
    try:
        return store.user_dates()
    finally:
        store.close()


# --- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One sustained-load target: what it asks, what was measured, met (None: not measurable)."""

    target: str
    measured: str
    met: bool | None


@dataclass(frozen=True)
class RateRun:
    """Everything one ``--rate`` run measured; ``rate.json`` is its JSON form."""

    started: str
    command: str
    url: str
    database: str
    rate: int
    connections: int
    duration: float
    slow_max: float
    load_seconds: float
    result: LevelResult
    samples: list[Sample]
    wait: WaitOutcome | None
    lag: LagReport | None
    wal: str | None
    # Seconds from the end of the load to the start of the wait (the nothing-lost count).
    wait_offset: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def processed_after_load(self) -> float | None:
        """Seconds from the end of the load to the last slow-step result (all processed)."""
        if self.lag is None or self.lag.last_processed is None:
            return None
        return max(0.0, self.lag.last_processed - self.load_seconds)

    @property
    def confirmed_after_load(self) -> float | None:
        """
        Seconds from the end of the load to the database count that found no unprocessed user:
        an upper bound of when the last ``processed: true`` was written (None: never found).
        """
        if self.wait is None or not self.wait.processed:
            return None
        return self.wait.seconds + self.wait_offset


def _max(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _wal_start(samples: list[Sample]) -> str:
    first = samples[0].wal_bytes if samples else None
    if not first or first < WAL_LEFT_OVER_BYTES:
        return ""
    return f" ({first / (1024 * 1024):,.1f} MiB when the load started)"


def judge(run: RateRun) -> list[Judgement]:
    """The sustained-load targets, judged on this run's own figures."""
    load = run.result.load
    out = [
        Judgement(
            "every answer 2xx",
            f"{load.ok:,} 2xx, {load.non2xx:,} non-2xx, {load.errors:,} errors "
            f"({load.timeouts:,} timeouts)",
            load.failures == 0 and load.ok > 0,
        ),
        Judgement(
            f"p99 ≤ {MAX_P99_MS:.0f} ms",
            "no answer" if load.p99_ms is None else f"{load.p99_ms:,.1f} ms",
            load.p99_ms is not None and load.p99_ms <= MAX_P99_MS,
        ),
    ]
    bound = run.slow_max + LAG_MARGIN_SECONDS
    lag_target = (
        f"slow-step lag p99 ≤ {bound:g} s (slow max + {LAG_MARGIN_SECONDS:g}) in every bucket"
    )
    if run.lag is None or not run.lag.buckets:
        out.append(Judgement(lag_target, "not measured (no users read)", None))
    else:
        worst = max(
            run.lag.buckets,
            key=lambda b: -1.0 if b.lag.p99 is None else b.lag.p99,
        )
        behind = [b for b in run.lag.buckets if b.lag.unprocessed]
        text = (
            f"worst {worst.lag.p99:.1f} s (users created {worst.start:g}-{worst.end:g} s)"
            if worst.lag.p99 is not None
            else "no user processed"
        )
        if behind:
            text += f"; {sum(b.lag.unprocessed for b in behind):,} users never processed"
        out.append(
            Judgement(
                lag_target,
                text,
                not behind
                and all(b.lag.p99 is not None and b.lag.p99 <= bound for b in run.lag.buckets),
            )
        )
    after = run.processed_after_load
    confirmed = run.confirmed_after_load
    processed_target = f"every user processed ≤ {MAX_PROCESSED_AFTER_SECONDS:.0f} s after the load"
    if confirmed is not None:
        # Judged on the count that saw every processed: true written (an upper bound), not on
        # the last date_updated, which squad stamps before the finish writer writes it.
        last = "" if after is None else f" (the last slow-step result at {after:.1f} s)"
        out.append(
            Judgement(
                processed_target,
                f"at most {confirmed:.1f} s{last}",
                confirmed <= MAX_PROCESSED_AFTER_SECONDS,
            )
        )
    elif run.wait is not None and not run.wait.processed:
        left = "?" if run.wait.remaining is None else f"{run.wait.remaining:,}"
        out.append(
            Judgement(
                processed_target,
                f"{left} not processed {run.wait.seconds + run.wait_offset:.0f} s after it",
                False,
            )
        )
    else:
        out.append(Judgement(processed_target, "not measured", None))
    wal = _max(float(s.wal_bytes) if s.wal_bytes is not None else None for s in run.samples)
    out.append(
        Judgement(
            f"WAL ≤ {MAX_WAL_BYTES // (1024 * 1024)} MiB",
            f"not available ({run.wal or 'no data folder'} not found)"
            if wal is None
            else f"largest {wal / (1024 * 1024):,.1f} MiB" + _wal_start(run.samples),
            None if wal is None else wal <= MAX_WAL_BYTES,
        )
    )
    rss = _max([*(s.rss_mb for s in run.samples), run.result.service_rss_mb])
    out.append(
        Judgement(
            f"squad RSS ≤ {MAX_RSS_MB:.0f} MB",
            "not available"
            if rss is None
            else f"largest {rss:,.0f} MiB = {rss * 1.048576:,.0f} MB",
            None if rss is None else rss * 1.048576 <= MAX_RSS_MB,
        )
    )
    return out


# --- the report ------------------------------------------------------------------------------

_SHORT = {
    SLOW_STEPS_IN_MEMORY: "in memory",
    SLOW_STEPS_RUNNING: "steps running",
    HASH_BACKLOG: "hash backlog",
    HASH_OLDEST: "hash oldest s",
    FINISH_BACKLOG: "finish backlog",
    SLOW_OLDEST: "step oldest s",
}
SAMPLE_COLUMNS = ("s", "phase", *(_SHORT[name] for name in METRICS), "WAL MiB", "RSS MiB")


def _cell(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _sample_row(sample: Sample) -> list[str]:
    return [
        f"{sample.at:.0f}",
        sample.phase,
        *(
            _cell(sample.metrics.get(name), 1 if name.endswith("_seconds") else 0)
            for name in METRICS
        ),
        _cell(None if sample.wal_bytes is None else sample.wal_bytes / (1024 * 1024), 1),
        _cell(sample.rss_mb),
    ]


def _thin(samples: list[Sample], most: int) -> list[Sample]:
    """At most C{most} samples, evenly spread, the first and the last always kept."""
    if len(samples) <= most:
        return samples
    step = (len(samples) - 1) / (most - 1)
    return [samples[round(i * step)] for i in range(most)]


def _lag_rows(lag: LagReport) -> list[list[str]]:
    def row(name: str, figures: LagFigures) -> list[str]:
        return [
            name,
            f"{figures.created:,}",
            f"{figures.processed:,}",
            f"{figures.unprocessed:,}",
            _cell(figures.p50, 2),
            _cell(figures.p99, 2),
            _cell(figures.max, 2),
        ]

    rows = [row(f"{b.start:g}-{b.end:g} s", b.lag) for b in lag.buckets]
    rows.append(row("all", lag.overall))
    return rows


LAG_COLUMNS = ("created", "users", "processed", "not processed", "p50 s", "p99 s", "max s")


def _missing(samples: list[Sample]) -> list[str]:
    return [name for name in METRICS if all(s.metrics.get(name) is None for s in samples)]


def _processed_lines(run: RateRun) -> list[str]:
    wait = run.wait
    if wait is None:
        return ["every user processed: not measured (the database could not be read)"]
    if not wait.processed:
        left = "an unknown number of" if wait.remaining is None else f"{wait.remaining:,}"
        return [
            f"every user processed: NO, stopped waiting {wait.seconds + run.wait_offset:.0f} s "
            f"after the load (the wait's limit: {WAIT_LIMIT:.0f} s) with {left} users not "
            "processed"
        ]
    after = run.processed_after_load
    last = "" if after is None else f"the last slow step ended {after:.1f} s after the load; "
    return [
        f"every user processed: {last}the database counted 0 unprocessed "
        f"{wait.seconds + run.wait_offset:.1f} s after the load"
    ]


def console_text(run: RateRun, folder: Path | None) -> str:
    """What ``--rate`` prints after the run."""
    load = run.result.load
    lines = [
        console_report(run.url, run.result, run.database),
        f"offered {run.rate:,} sign-ups/s, answered {load.requests_per_second:,.1f} req/s",
        f"CPU per 2xx sign-up during the load: service "
        f"{cpu_ms(run.result.service_cpu_ms_per_signup)} ms, database "
        f"{cpu_ms(run.result.database_cpu_ms_per_signup)} ms",
        "",
        f"samples every {SAMPLE_INTERVAL:g} s (s: since the load started; 'after': the wait), "
        f"WAL {run.wal or 'not available'}:",
        box_table(SAMPLE_COLUMNS, [_sample_row(s) for s in _thin(run.samples, 40)], split=2),
    ]
    missing = _missing(run.samples)
    if missing:
        lines.append(f"  not available in /metrics: {', '.join(missing)}")
    if run.lag is not None:
        lines += [
            "",
            "slow-step lag (date_updated - date_created), by "
            f"{BUCKET_SECONDS:g} s of date_created:",
            box_table(LAG_COLUMNS, _lag_rows(run.lag)),
        ]
    lines += ["", *_processed_lines(run), "", "against the sustained-load targets:"]
    for judgement in judge(run):
        word = {True: "met", False: "NOT MET", None: "not judged"}[judgement.met]
        lines.append(f"  {word:>10}  {judgement.target}: {judgement.measured}")
    lines += [f"  note: {note}" for note in run.notes]
    if folder is not None:
        lines += ["", f"report: {folder / 'report.md'}"]
    return "\n".join(lines)


def render_markdown(run: RateRun) -> str:
    """The text of ``report.md`` for a ``--rate`` run."""
    load = run.result.load
    out = [
        f"# squad at a fixed rate, {run.started}",
        "",
        f"Produced by `{run.command}` against `{run.url}` (database `{run.database}`): "
        f"{run.rate:,} sign-ups/s offered in total over {load.connections} connections for "
        f"{format_duration(run.duration)} (autocannon's `overallRate`, `POST /users` with a new "
        "random sign-up body per request, 10 s request timeout), after `GET /health` and "
        "`DELETE /collections`; then a wait until every user is processed.",
        "",
        "## Against the sustained-load targets",
        "",
        markdown_table(
            ["target", "measured", "verdict"],
            [
                [
                    j.target,
                    j.measured,
                    {True: "met", False: "**not met**", None: "not judged"}[j.met],
                ]
                for j in judge(run)
            ],
            numeric=False,
        ),
        "",
        "## The answers",
        "",
        markdown_table(
            [*SEED_COLUMNS, *EXTRA_COLUMNS, *CPU_COLUMNS, "offered/s", "nothing lost"],
            [
                [
                    *load_row(load),
                    *cpu_row(run.result),
                    f"{run.rate:,}",
                    f"{run.result.check.verdict}: {run.result.check.detail}",
                ]
            ],
        ),
        "",
        f"CPU during the load, % of one core: service {_cell(run.result.service_cpu_percent)}, "
        f"database {_cell(run.result.database_cpu_percent)}, load generator "
        f"{load.loadgen_cpu_percent:.0f}, everything else {_cell(run.result.other_cpu_percent)}; "
        f"per 2xx sign-up: service {cpu_ms(run.result.service_cpu_ms_per_signup)} ms, database "
        f"{cpu_ms(run.result.database_cpu_ms_per_signup)} ms (the slow steps and hashes that "
        "end after the load are not in it). "
        f"Service memory after the load: {_cell(run.result.service_rss_mb)} MiB RSS"
        + (
            f" across {run.result.service_processes} processes."
            if run.result.service_processes
            else "."
        ),
        "",
        "## Processed",
        "",
        *_processed_lines(run),
        "",
    ]
    if run.lag is not None:
        out += [
            f"## Slow-step lag by {BUCKET_SECONDS:g} s of `date_created`",
            "",
            "`date_updated - date_created` of every processed user (squad stamps `date_updated` "
            "when the slow step ends; the finish writer writes it with `processed: true` soon "
            "after), read once after the wait; buckets count from the start of the load.",
            "",
            markdown_table(LAG_COLUMNS, _lag_rows(run.lag)),
            "",
        ]
    out += [
        f"## Samples (every {SAMPLE_INTERVAL:g} s)",
        "",
        f"From `GET /metrics`, the size of `{run.wal or 'the WAL (not found)'}` and the "
        "service's RSS; *s* counts from the start of the load, *after* is the wait.",
        "",
        markdown_table(list(SAMPLE_COLUMNS), [_sample_row(s) for s in run.samples]),
        "",
    ]
    missing = _missing(run.samples)
    if missing:
        out += [f"Not available in squad's /metrics: {', '.join(f'`{m}`' for m in missing)}.", ""]
    for note in run.notes:
        out.append(f"- {note}")
    if run.notes:
        out.append("")
    return "\n".join(out)


def _json(run: RateRun) -> str:
    data = asdict(run)
    data["result"] = level_to_dict(run.result)
    data["judgements"] = [asdict(j) for j in judge(run)]
    data["processed_after_load"] = run.processed_after_load
    data["confirmed_after_load"] = run.confirmed_after_load
    return json.dumps(data, indent=2) + "\n"


def write_rate_report(run: RateRun, folder: Path) -> Path:
    """Write ``report.md`` and ``rate.json`` into C{folder}; return the path of ``report.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rate.json").write_text(_json(run))
    report = folder / "report.md"
    report.write_text(render_markdown(run))
    return report


# --- the run ---------------------------------------------------------------------------------


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
    Returns the run and its folder. Raises what L{benchmark.run.measure} raises.
    """
    assert settings.rate is not None
    pid_text = environ.get("SQUAD_PID")
    service_pid = int(pid_text) if pid_text and pid_text.isdigit() else None
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
