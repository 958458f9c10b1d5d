"""What ``./bin/benchmark --original-tool`` prints: the original's table, squad's count beside
it, and sentences that say what the non-2xx were."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmark.original_tool.figures import OriginalRun, SquadView, is_2xx
from benchmark.report.tables import SEED_COLUMNS, box_table

__all__ = ["console_report", "explain"]


def _count(items: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} x {key}" for key, n in sorted(items.items()))


def explain(run: OriginalRun) -> list[str]:
    """
    Sentences that say what the non-2xx were: e.g. "25 non-2xx = 25 x 400 invalid_json, one
    per connection, all bodyless first requests", then whatever else there was.
    """
    figures, view = run.figures, run.view
    bodyless = {c: n for c, n in figures.bodyless_status_codes.items() if not is_2xx(c)}
    lines: list[str] = []
    if figures.non2xx == 0:
        lines.append("0 non-2xx.")
    elif bodyless and figures.other_non2xx == 0:
        statuses = _count(bodyless)
        invalid = view.codes.get("invalid_json", 0)
        what = (
            f"{figures.bodyless_non2xx:,} x 400 invalid_json"
            if set(bodyless) == {"400"} and invalid >= figures.bodyless_non2xx
            else statuses
        )
        per = (
            "one per connection"
            if figures.bodyless_non2xx == figures.connections
            else f"{figures.bodyless_non2xx:,} of {figures.connections:,} connections"
        )
        lines.append(
            f"{figures.non2xx:,} non-2xx = {what}, {per}, all bodyless first requests "
            "(autocannon 4.6.0 sends each connection's first request before the response "
            "handler sets a body); every other answer was 2xx."
        )
    else:
        lines.append(
            f"{figures.non2xx:,} non-2xx: {figures.bodyless_non2xx:,} bodyless first requests"
            + (f" ({_count(bodyless)})" if bodyless else "")
            + f", {figures.other_non2xx:,} anything else"
        )
        others = {
            c: n - bodyless.get(c, 0)
            for c, n in figures.status_codes.items()
            if not is_2xx(c) and n - bodyless.get(c, 0) > 0
        }
        if others:
            lines.append(f"  the anything-else by status (the tool's count): {_count(others)}")
    if figures.errors:
        lines.append(
            f"{figures.errors:,} errors ({figures.timeouts:,} of them timeouts; autocannon "
            "resends the same request on a new connection after each)."
        )
    if view.problem:
        lines.append(f"squad's view: unavailable: {view.problem}")
    else:
        answered = sum(n for s, n in figures.status_codes.items())
        wrote = sum(view.statuses.values())
        if wrote > answered:
            unread = {
                status: n - figures.status_codes.get(status, 0)
                for status, n in view.statuses.items()
                if not is_2xx(status) and n > figures.status_codes.get(status, 0)
            }
            lines.append(
                f"squad wrote {wrote - answered:,} more answers than the tool read (in flight "
                "when it stopped"
                + (f"; the non-2xx among them: {_count(unread)}" if unread else "")
                + ")."
            )
        if view.refused or view.timed_out:
            lines.append(
                f"squad also refused {view.refused:,} connections (503, at its connection limit)"
                f" and answered {view.timed_out:,} requests 408 (not whole within its deadline)."
            )
    return lines


def _box(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return box_table(headers, rows).splitlines()


def _side_by_side(left: list[str], right: list[str], gap: str = "   ") -> list[str]:
    width = max((len(line) for line in left), default=0)
    height = max(len(left), len(right))
    left = left + [""] * (height - len(left))
    right = right + [""] * (height - len(right))
    return [(a.ljust(width) + gap + b).rstrip() for a, b in zip(left, right, strict=True)]


def _view_rows(view: SquadView) -> list[list[str]]:
    rows = [["status", status, f"{n:,}"] for status, n in sorted(view.statuses.items())]
    rows += [["error code", code, f"{n:,}"] for code, n in sorted(view.codes.items())]
    if view.refused:
        rows.append(["503 refused", "connections at the limit", f"{view.refused:,}"])
    if view.timed_out:
        rows.append(["408", "request not whole in time", f"{view.timed_out:,}"])
    return rows


def console_report(url: str, run: OriginalRun) -> str:
    """What ``./bin/benchmark --original-tool`` prints after its run."""
    figures, view = run.figures, run.view
    tool = [
        "the original tool's table",
        *_box(
            SEED_COLUMNS,
            [
                [
                    f"{figures.sent:,}",
                    f"{figures.non2xx:,}",
                    f"{figures.errors:,}",
                    f"{figures.timeouts:,}",
                ]
            ],
        ),
    ]
    if view.problem:
        squad = ["squad's /metrics", f"  unavailable: {view.problem}"]
    else:
        squad = [
            "squad's /metrics: POST /users answers",
            *_box(("by", "value", "answers"), _view_rows(view) or [["-", "-", "0"]]),
        ]
    versions = ", ".join(f"{k} {v}" for k, v in figures.versions.items())
    lines = [
        "",
        f"original tool: {figures.connections} connections for {figures.duration:.1f} s against"
        f" {url} (POST /users, body set after each response, 10 s timeout; {versions})",
        *_side_by_side(tool, squad),
        *explain(run),
        f"2xx {figures.ok:,}; {figures.requests_per_second:,.1f} responses/s; latency (autocannon"
        f" 4.6.0, whole ms) p50 {_ms(figures.p50_ms)}, p90 {_ms(figures.p90_ms)}, p99"
        f" {_ms(figures.p99_ms)}, max {_ms(figures.max_ms)}; load generator"
        f" {100 * figures.loadgen_cpu_seconds / figures.elapsed if figures.elapsed else 0:.0f}%"
        " of a core",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"
