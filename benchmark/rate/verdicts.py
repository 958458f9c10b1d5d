"""The sustained-load targets, judged on one ``--rate`` run's own figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from benchmark.rate.figures import RateRun
from benchmark.rate.sampling import WAL_LEFT_OVER_BYTES, Sample

__all__ = ["Judgement", "judge"]

# The sustained-load targets.
MAX_P99_MS = 50.0
LAG_MARGIN_SECONDS = 5.0
MAX_PROCESSED_AFTER_SECONDS = 30.0
MAX_WAL_BYTES = 64 * 1024 * 1024
MAX_RSS_MB = 400.0


@dataclass(frozen=True)
class Judgement:
    """One sustained-load target: what it asks, what was measured, met (None: not measurable)."""

    target: str
    measured: str
    met: bool | None


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
