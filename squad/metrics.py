"""Prometheus metrics for the whole service, across all worker processes.

The supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before it starts the
workers: each worker writes its samples to memory-mapped files there, and a scrape of
``GET /metrics`` on any worker adds up all of them (prometheus_client's multiprocess mode). A
process without a supervisor uses the ordinary registry. Recording a sample is a few
microseconds; gauges of queue sizes are sampled once a second, not per request.

Workers end (a crash, a reload), so the folder must stay true without them: every gauge is in
a ``live`` mode, dropped when its process ends, and ``retire_process`` folds an ended worker's
counters and histograms into one archive file per type, so totals never go back and files do
not pile up. A scrape and a merge exclude each other with a lock file in the folder: a scrape
between the archive's replacement and the dead file's removal would count the dead twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = [
    "SquadMetrics",
    "count_worker_restart",
    "method_label",
    "render",
    "retire_process",
    "route_labeller",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# Series that only ever add up (histogram buckets are stored per bucket, not cumulated).
_ADDITIVE_KINDS = ("counter", "histogram", "summary")
_LOCK_FILE = "merge.lock"


@contextlib.contextmanager
def _locked(directory: str, mode: int) -> Iterator[None]:
    descriptor = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, mode)
        yield
    finally:
        os.close(descriptor)


def retire_process(pid: int, directory: str) -> None:
    """A worker writing its metrics in ``directory`` ended: drop its gauges, and add its
    counters and histograms to the folder's archive files, removing its own."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(pid, directory)
    with _locked(directory, fcntl.LOCK_EX):
        for kind in _ADDITIVE_KINDS:
            ended = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(ended):
                continue
            archive = os.path.join(directory, f"{kind}_archive.db")
            totals: dict[str, float] = {}
            for path in (archive, ended):
                if os.path.exists(path):
                    for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
                        totals[key] = totals.get(key, 0.0) + value
            # Written aside (a name the scrape's *.db glob skips), then swapped in whole.
            fresh = archive + ".new"
            merged = MmapedDict(fresh)
            try:
                for key, value in totals.items():
                    merged.write_value(key, value, 0.0)
            finally:
                merged.close()
            os.replace(fresh, archive)
            os.remove(ended)
        # Gauges in a mode mark_process_dead keeps (none of squad's): a dead value is stale.
        for leftover in glob.glob(os.path.join(directory, f"gauge_*_{pid}.db")):
            os.remove(leftover)


_RESTARTS_HELP = "Workers the supervisor restarted after they died"


def count_worker_restart(directory: str | None) -> None:
    """The supervisor restarted a worker: add one to ``squad_worker_restarts_total`` in the
    workers' ``directory``, since the supervisor serves no ``/metrics`` of its own. It writes
    the file its own Counter would in multiprocess mode, which the workers' scrapes add up."""
    if directory is None:
        return
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    key = mmap_key("squad_worker_restarts", "squad_worker_restarts_total", [], [], _RESTARTS_HELP)
    counts = MmapedDict(os.path.join(directory, f"counter_{os.getpid()}.db"))
    try:
        value, timestamp = counts.read_value(key)
        counts.write_value(key, value + 1, timestamp)
    finally:
        counts.close()


def render() -> tuple[bytes, str]:
    """The exposition text for the whole service, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        directory = os.environ[MULTIPROC_ENV]
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        with _locked(directory, fcntl.LOCK_SH):
            return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_METHODS = {
    method.encode("ascii"): method
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}


def method_label(method: bytes) -> str:
    """A bounded label for a request method: any other token a client sends is "other", so
    made-up methods cannot multiply the metric's series."""
    return _METHODS.get(method, "other")


def route_labeller(templates: Iterable[str]) -> Callable[[bytes], str]:
    """A function giving each request path a bounded label: the one of ``templates`` (such as
    ``/users/{id}``, where a ``{...}`` part stands for one path segment, possibly empty) that the
    path without its query matches, templates without variables first, else "other"."""
    exact: dict[str, str] = {}
    variable: list[tuple[re.Pattern[str], str]] = []
    for template in templates:
        if "{" in template:
            parts = re.split(r"\{[^}]*\}", template)
            variable.append((re.compile("[^/]*".join(map(re.escape, parts))), template))
        else:
            exact.setdefault(template, template)

    def route_of(path: bytes) -> str:
        text = path.split(b"?", 1)[0].decode("latin-1")
        label = exact.get(text)
        if label is not None:
            return label
        for pattern, template in variable:
            if pattern.fullmatch(text) is not None:
                return template
        return "other"

    return route_of


class SquadMetrics:
    """The metric objects of one process (created once, after the multiprocess setup)."""

    _instance: SquadMetrics | None = None

    @classmethod
    def get(cls) -> SquadMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests: Any = Counter(
            "squad_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
        )
        self.latency: Any = Histogram(
            "squad_http_request_duration_seconds",
            "Time from a request's arrival to its answer",
            ["route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.errors: Any = Counter(
            "squad_http_errors_total", "Error answers written, by their machine code", ["code"]
        )
        self.shed: Any = Counter("squad_shed_requests_total", "Sign-ups refused to shed load")
        self.batch_size: Any = Histogram(
            "squad_group_commit_batch_size",
            "Sign-ups written together in one bulk insert",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
        )
        self.db_write: Any = Histogram(
            "squad_db_batch_write_seconds",
            "Duration of one group-commit write",
            buckets=_LATENCY_BUCKETS,
        )
        self.db_errors: Any = Counter(
            "squad_db_errors_total", "Database operations that failed", ["operation"]
        )
        self.slow_done: Any = Counter("squad_slow_steps_done_total", "Slow steps finished")
        self.slow_failed: Any = Counter(
            "squad_slow_step_failures_total", "Slow-step attempts that failed and will retry"
        )
        self.hashed: Any = Counter("squad_passwords_hashed_total", "Passwords hashed")
        self.slow_pending: Any = Gauge(
            "squad_slow_steps_in_memory",
            "Users whose background work this process holds",
            multiprocess_mode="livesum",
        )
        self.slow_running: Any = Gauge(
            "squad_slow_steps_running",
            "Slow steps waiting on the verifier or stand-in",
            multiprocess_mode="livesum",
        )
        self.hash_backlog: Any = Gauge(
            "squad_password_hash_backlog",
            "Sealed passwords waiting to be hashed",
            multiprocess_mode="livesum",
        )
        self.hash_oldest: Any = Gauge(
            "squad_password_hash_oldest_age_seconds",
            "Age of the oldest batch of sealed passwords waiting to be hashed",
            # Live only: a dead worker's last age must not outlive it (its batches are adopted).
            multiprocess_mode="livemax",
        )
        self.finish_backlog: Any = Gauge(
            "squad_finish_writes_backlog",
            "Finished work not yet written",
            multiprocess_mode="livesum",
        )
        self.request_timeouts: Any = Counter(
            "squad_http_request_timeouts_total",
            "Connections answered 408: a request did not arrive whole within the deadline",
        )
        self.refused_connections: Any = Counter(
            "squad_http_refused_connections_total",
            "Connections refused (503) because the worker held its maximum",
        )
        self.open_connections: Any = Gauge(
            "squad_http_open_connections",
            "Open HTTP connections (sampled once a second)",
            multiprocess_mode="livesum",
        )
        self.instance_info: Any = Gauge(
            "squad_instance_info",
            "Always 1; its label names this instance (--instance-name), so dashboards can tell "
            "apart the instances that share a database",
            ["squad_instance"],
            multiprocess_mode="livemax",
        )
        self.oldest_pending: Any = Gauge(
            "squad_slow_step_oldest_age_seconds",
            "Age of the oldest batch of slow steps held in memory",
            multiprocess_mode="livemax",
        )
        self.slow_step_max: Any = Gauge(
            "squad_slow_step_max_seconds",
            "The longest one slow-step attempt should take: --slow-max, or the verifier's timeout",
            multiprocess_mode="livemax",
        )
        # Only the supervisor counts (count_worker_restart); here it is exported at 0 even
        # before the first restart, or with a single process.
        self.worker_restarts: Any = Counter("squad_worker_restarts", _RESTARTS_HELP)
