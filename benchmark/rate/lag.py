"""
The slow-step lag, from one read of ``users`` after the wait: ``date_updated - date_created`` of
every processed user (squad stamps ``date_updated`` when the slow step ends), overall and per
L{BUCKET_SECONDS} of ``date_created``, and when the last slow step ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmark.run.store import MongoStore

__all__ = [
    "BUCKET_SECONDS",
    "Bucket",
    "LagFigures",
    "LagReport",
    "lag_report",
    "percentile",
    "read_users",
]

BUCKET_SECONDS = 10.0


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
