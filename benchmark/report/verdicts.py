"""squad's performance targets, checked against a sweep: met or not, and by how much.

Each verdict compares squad with what the same sweep measured, so a report never needs a figure
from elsewhere. A target whose comparison server or level was not in the sweep is left out,
not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.figures import ORIGINAL_TOOL_LABEL, LevelResult, SweepResults

__all__ = ["Verdict", "verdicts"]

MIN_CEILING_RATIO = 0.7
MAX_P99_AT_LOW_MS = 15.0
LOW_LEVEL = 25
HIGH_LEVEL = 1000
MAX_P99_RATIO_AT_HIGH = 1.5
MAX_RSS_MB = 400.0
# Against the stored reference (benchmark/servers/stored/: parse, insert, answer) at every level.
MIN_STORED_RATIO = 0.8
MAX_P99_RATIO_TO_STORED = 2.0
P99_ALLOWANCE_OVER_STORED_MS = 5.0
# A bare insert plus a processed-update that costs the database no more than the insert.
MAX_DATABASE_CPU_RATIO_TO_STORED = 2.0
# Against the better of the Node references (one process, one per core) at every level.
MIN_NODE_RATIO = 1.6
NODE_LABELS = ("reference-node", "reference-node-cluster")


@dataclass(frozen=True)
class Verdict:
    """One target: what it asks, what this sweep measured, and whether that meets it."""

    target: str
    measured: str
    met: bool


def _by_level(results: SweepResults, label: str) -> dict[int, LevelResult]:
    for target in results.targets:
        if target.label == label and not target.error:
            return {level.load.connections: level for level in target.levels}
    return {}


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf")


def _short(ratio: float, least: float) -> str:
    """How far C{ratio} falls below C{least}, as a note; nothing when it does not."""
    return "" if ratio >= least else f" ({1 - ratio / least:.0%} short)"


def _over(value: float, most: float) -> str:
    """How far C{value} goes beyond C{most}, as a note to follow a figure; nothing when not."""
    if value <= most:
        return ""
    return f", {value / most - 1:.0%} over" if most > 0 else ", over"


def _throughput(
    squad: dict[int, LevelResult],
    reference: dict[int, LevelResult],
    levels: list[int],
    least: float,
    name: str,
) -> list[Verdict]:
    """squad's requests/s against ``reference``'s at each level both ran (none if none did)."""
    ratios = [
        (c, _ratio(squad[c].load.requests_per_second, reference[c].load.requests_per_second))
        for c in levels
        if c in reference
    ]
    if not ratios:
        return []
    return [
        Verdict(
            f"requests/s at least {least}x {name} at every level",
            ", ".join(f"{r:.2f}x at {c}{_short(r, least)}" for c, r in ratios),
            min(r for _, r in ratios) >= least,
        )
    ]


def verdicts(results: SweepResults) -> list[Verdict]:
    """The targets this sweep can judge, in the issue's order."""
    squad = _by_level(results, "squad")
    if not squad:
        return []
    ceiling = _by_level(results, "ceiling")
    nodes = {label: _by_level(results, label) for label in NODE_LABELS}
    stored = _by_level(results, "stored")
    levels = [connections for connections in results.levels if connections in squad]
    out: list[Verdict] = []

    failures = [squad[connections].load.failures for connections in levels]
    out.append(
        Verdict(
            "0 non-2xx, errors and timeouts at every level",
            ", ".join(f"{n:,} at {c}" for n, c in zip(failures, levels, strict=True)),
            not any(failures),
        )
    )

    # The original tool's bodyless first requests are refused by design (an empty sign-up is not
    # a user): only what it got besides them counts.
    original = _by_level(results, ORIGINAL_TOOL_LABEL)
    judged = [connections for connections in results.levels if connections in original]
    if judged:
        loads = [original[connections].load for connections in judged]
        bodyless = [load.bodyless_non2xx or 0 for load in loads]
        others = [load.failures - b for load, b in zip(loads, bodyless, strict=True)]
        out.append(
            Verdict(
                "original tool: 0 non-2xx, errors and timeouts at every level besides the"
                " bodyless first requests",
                ", ".join(
                    f"{o:,} at {c} (besides {b:,} bodyless)"
                    for o, b, c in zip(others, bodyless, judged, strict=True)
                ),
                not any(others),
            )
        )

    out.extend(_throughput(squad, ceiling, levels, MIN_CEILING_RATIO, "the bare-Klein ceiling"))

    high_ceiling = ceiling.get(HIGH_LEVEL)
    high = squad.get(HIGH_LEVEL)
    if high and high_ceiling and high.load.p99_ms and high_ceiling.load.p99_ms:
        ratio = _ratio(high.load.p99_ms, high_ceiling.load.p99_ms)
        out.append(
            Verdict(
                f"p99 at {HIGH_LEVEL} connections at most {MAX_P99_RATIO_AT_HIGH}x the ceiling's",
                f"{high.load.p99_ms:,.0f} ms vs {high_ceiling.load.p99_ms:,.0f} ms: {ratio:.2f}x",
                ratio <= MAX_P99_RATIO_AT_HIGH,
            )
        )

    out.extend(_throughput(squad, stored, levels, MIN_STORED_RATIO, "the stored reference"))
    beside_stored = [connections for connections in levels if connections in stored]
    if beside_stored:
        bounds = [
            (c, mine, MAX_P99_RATIO_TO_STORED * theirs + P99_ALLOWANCE_OVER_STORED_MS)
            for c in beside_stored
            if (mine := squad[c].load.p99_ms) is not None
            and (theirs := stored[c].load.p99_ms) is not None
        ]
        if bounds:
            out.append(
                Verdict(
                    f"p99 at most {MAX_P99_RATIO_TO_STORED:g}x the stored reference's"
                    f" + {P99_ALLOWANCE_OVER_STORED_MS:.0f} ms at every level",
                    ", ".join(
                        f"{mine:,.1f} ms (at most {bound:,.1f}{_over(mine, bound)}) at {c}"
                        for c, mine, bound in bounds
                    ),
                    all(mine <= bound for _, mine, bound in bounds),
                )
            )
        costs = [
            (c, mine, theirs, _ratio(mine, theirs))
            for c in beside_stored
            if (mine := squad[c].database_cpu_ms_per_signup) is not None
            and (theirs := stored[c].database_cpu_ms_per_signup) is not None
        ]
        if costs:
            most = MAX_DATABASE_CPU_RATIO_TO_STORED
            out.append(
                Verdict(
                    f"database CPU per sign-up at most {most:g}x the stored reference's"
                    " at every level",
                    ", ".join(
                        f"{r:.2f}x ({mine:.3f} vs {theirs:.3f} ms{_over(r, most)}) at {c}"
                        for c, mine, theirs, r in costs
                    ),
                    all(r <= most for *_, r in costs),
                )
            )

    low = squad.get(LOW_LEVEL)
    if low and low.load.p99_ms is not None:
        low_ceiling = ceiling.get(LOW_LEVEL)
        beside = (
            f" (the ceiling's: {low_ceiling.load.p99_ms:,.1f} ms)"
            if low_ceiling and low_ceiling.load.p99_ms is not None
            else ""
        )
        out.append(
            Verdict(
                f"p99 at {LOW_LEVEL} connections under {MAX_P99_AT_LOW_MS:.0f} ms",
                f"{low.load.p99_ms:,.1f} ms{beside}",
                low.load.p99_ms < MAX_P99_AT_LOW_MS,
            )
        )

    # At each level, the Node reference that answered more: one process or one per core.
    best_node = {
        c: max(
            ((label, node[c]) for label, node in nodes.items() if c in node),
            key=lambda pair: pair[1].load.requests_per_second,
        )
        for c in levels
        if any(c in node for node in nodes.values())
    }
    if best_node:
        beside_node = [
            (
                c,
                label,
                _ratio(squad[c].load.requests_per_second, theirs.load.requests_per_second),
            )
            for c, (label, theirs) in best_node.items()
        ]
        out.append(
            Verdict(
                f"requests/s at least {MIN_NODE_RATIO}x the better Node reference's (one process"
                " or one per core) at every level",
                ", ".join(
                    f"{r:.2f}x {label} at {c}{_short(r, MIN_NODE_RATIO)}"
                    for c, label, r in beside_node
                ),
                min(r for *_, r in beside_node) >= MIN_NODE_RATIO,
            )
        )

    if high and high.service_rss_mb is not None:
        out.append(
            Verdict(
                f"service RSS under {MAX_RSS_MB:.0f} MB after the {HIGH_LEVEL}-connection run",
                f"{high.service_rss_mb:,.0f} MiB"
                + (f" ({high.service_processes} processes)" if high.service_processes else ""),
                high.service_rss_mb * 1.048576 < MAX_RSS_MB,
            )
        )

    verdict_words = [squad[c].check.verdict for c in levels]
    out.append(
        Verdict(
            "every 2xx stored (nothing lost)",
            ", ".join(f"{v} at {c}" for v, c in zip(verdict_words, levels, strict=True)),
            all(word == "PASS" for word in verdict_words),
        )
    )
    return out
