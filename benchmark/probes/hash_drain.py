"""
``python -m benchmark.probes.hash_drain``: the password-hashing backlog after a load, and how
fast it drains.

squad seals each password on the request path and hashes it later with argon2id, in the
background, while the API is not busy (see ``squad.background.hashing``). After a burst of sign-ups
the
passwords waiting for their hash are that backlog: each waits sealed in the
``sealed_passwords`` collection until it is hashed. This tool reads squad's own figures from
``GET /metrics`` every ``--interval`` seconds (``squad_password_hash_backlog``, the passwords
queued for hashing in all workers, and ``squad_passwords_hashed_total``) until the backlog is
empty or ``--limit`` passes, and prints the backlog, the rate it drains at (users/s) and the
time it took. At the end it counts the users without a ``password_hash`` in the database once,
to confirm.
Run it right after ``./bin/benchmark``:

    ./bin/benchmark 100 20s && .venv/bin/python -m benchmark.probes.hash_drain

The service is at ``URL`` and the database is ``SQUAD_MONGO_URI``/``SQUAD_DATABASE``, as for
``./bin/benchmark``. It polls /metrics, not the database, because counting users without a hash
is a scan of ``users`` on FerretDB (it pushes no filter down): seconds of CPU per count, taken
from the hashing it measures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from benchmark.args import DEFAULT_DATABASE, DEFAULT_MONGO_URI, DEFAULT_URL
from benchmark.run.metrics import parse_metrics
from benchmark.run.store import MongoStore, StoreUnavailable

__all__ = [
    "DrainFigures",
    "HashProgress",
    "MetricsProgress",
    "count_unhashed",
    "main",
    "watch_backlog",
]

BACKLOG = "squad_password_hash_backlog"
HASHED = "squad_passwords_hashed_total"


class HashProgress(Protocol):
    """Where the measurement reads the hasher's progress."""

    def read(self) -> tuple[int, int]:
        """(passwords waiting for their hash, passwords hashed so far)."""


class MetricsProgress:
    """Reads the hasher's figures from squad's ``GET /metrics`` (all workers summed)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self._timeout = timeout

    def read(self) -> tuple[int, int]:
        try:
            with urllib.request.urlopen(self.url, timeout=self._timeout) as answer:
                text = answer.read().decode("utf-8")
        except OSError as error:
            raise StoreUnavailable(f"{self.url} did not answer: {error}") from None
        samples = parse_metrics(text)
        if BACKLOG not in samples or HASHED not in samples:
            raise StoreUnavailable(f"{self.url} has no {BACKLOG} or {HASHED}: is it squad?")
        return int(samples[BACKLOG]), int(samples[HASHED])


def count_unhashed(uri: str, database: str) -> int:
    """How many users of ``database`` have no password hash yet (one scan of ``users``)."""
    store = MongoStore(uri, database)
    try:
        return store.count_unhashed()
    finally:
        store.close()


@dataclass(frozen=True)
class DrainFigures:
    """How the backlog drained: ``rate`` is passwords hashed per second over the whole wait."""

    start: int
    remaining: int
    hashed: int
    seconds: float
    drained: bool

    @property
    def rate(self) -> float:
        return self.hashed / self.seconds if self.seconds > 0 else 0.0


def watch_backlog(
    progress: HashProgress,
    interval: float = 1.0,
    limit: float = 1800.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[float, int, float | None], None] | None = None,
) -> DrainFigures:
    """
    Read the backlog every ``interval`` seconds until it is empty or ``limit`` seconds passed.
    ``report`` hears (elapsed seconds, backlog, passwords hashed per second since the last
    reading) after every reading; the rate is None for the first.
    """
    started = clock()
    start, hashed_before = progress.read()
    if report is not None:
        report(0.0, start, None)
    remaining, previous, previous_at = start, hashed_before, started
    while remaining > 0 and clock() - started < limit:
        sleep(interval)
        remaining, hashed = progress.read()
        now = clock()
        if report is not None:
            span = now - previous_at
            report(now - started, remaining, (hashed - previous) / span if span > 0 else None)
        previous, previous_at = hashed, now
    return DrainFigures(
        start, remaining, previous - hashed_before, clock() - started, remaining == 0
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Exit status 0 when the backlog drained within ``--limit``, 1 otherwise."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.probes.hash_drain",
        description="Measure squad's password-hashing backlog and how fast it drains (service "
        "at URL, database from SQUAD_MONGO_URI and SQUAD_DATABASE, as ./bin/benchmark).",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--limit", type=float, default=1800.0, help="give up after this long")
    options = parser.parse_args(argv)
    url = environ.get("URL") or DEFAULT_URL
    uri = environ.get("SQUAD_MONGO_URI") or DEFAULT_MONGO_URI
    database = environ.get("SQUAD_DATABASE") or DEFAULT_DATABASE

    def show(elapsed: float, backlog: int, rate: float | None) -> None:
        pace = f"{rate:8.1f} users/s" if rate is not None else ""
        print(f"{elapsed:7.1f} s   backlog {backlog:>8,}   {pace}", flush=True)

    try:
        figures = watch_backlog(MetricsProgress(url), options.interval, options.limit, report=show)
        unhashed = count_unhashed(uri, database)
    except StoreUnavailable as error:
        print(f"hash_drain: {error}", file=sys.stderr)
        return 1
    verdict = "drained" if figures.drained else f"NOT drained ({figures.remaining:,} left)"
    print(
        f"hash backlog {figures.start:,} passwords: {verdict} in {figures.seconds:.1f} s, "
        f"{figures.hashed:,} hashed, {figures.rate:.1f} users/s on average; "
        f"database: {unhashed:,} users without a password hash",
        flush=True,
    )
    return 0 if figures.drained and unhashed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
