"""
The wait after a ``--rate`` load: sample until /metrics says no slow step runs, then count the
unprocessed users in the database until that count is zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from benchmark.rate.sampling import (
    FINISH_BACKLOG,
    SAMPLE_INTERVAL,
    SLOW_STEPS_IN_MEMORY,
    SLOW_STEPS_RUNNING,
    Sample,
)

__all__ = [
    "WAIT_LIMIT",
    "WaitOutcome",
    "steps_in_flight",
    "unprocessed_from_metrics",
    "wait_until_processed",
]

# Once no slow step runs, the database is counted this often until it says 0: results still
# queued for writing, work stored for later adoption and retries are not all in /metrics.
RECOUNT_INTERVAL = 4.0
WAIT_LIMIT = 600.0


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
