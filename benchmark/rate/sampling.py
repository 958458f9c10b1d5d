"""
What ``--rate`` samples every L{SAMPLE_INTERVAL} seconds, during the load and after it: squad's
gauges from ``GET /metrics`` (L{METRICS}; a gauge squad does not export is None, never guessed),
the size of the SQLite WAL of the service's database (FerretDB's SQLite backend keeps database
``D`` in ``D.sqlite``, its WAL in ``D.sqlite-wal``) and the service's resident memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from benchmark.run.measure import is_local
from benchmark.run.metrics import read_metrics
from benchmark.run.procs import service_processes
from harness.processes import rss_megabytes

__all__ = [
    "FINISH_BACKLOG",
    "HASH_BACKLOG",
    "HASH_OLDEST",
    "METRICS",
    "SAMPLE_INTERVAL",
    "SLOW_OLDEST",
    "SLOW_STEPS_IN_MEMORY",
    "SLOW_STEPS_RUNNING",
    "WAL_LEFT_OVER_BYTES",
    "Sample",
    "Sampler",
    "wal_file",
]

SAMPLE_INTERVAL = 2.0

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
# A WAL file larger than this when the load starts is left from earlier work, and said so.
WAL_LEFT_OVER_BYTES = 1024 * 1024


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


def wal_file(data_dir: Path, database: str) -> Path:
    """Where FerretDB's SQLite backend keeps the WAL of C{database}."""
    return data_dir / f"{database}.sqlite-wal"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


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
