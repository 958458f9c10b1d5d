"""The tables: the console table of a run, and the table drawing the reports share."""

from __future__ import annotations

from collections.abc import Sequence

from benchmark.figures import LevelResult, LoadFigures

__all__ = [
    "CPU_COLUMNS",
    "EXTRA_COLUMNS",
    "OTHER_CPU_WARNING",
    "SEED_COLUMNS",
    "box_table",
    "console_report",
    "cpu_ms",
    "cpu_row",
    "load_row",
    "markdown_table",
    "ms_text",
    "number_text",
]

# Percent of one core used by unrelated processes above which a run is flagged as disturbed.
OTHER_CPU_WARNING = 15.0

SEED_COLUMNS = ("requests sent", "non-2xx", "errors", "timeouts")
EXTRA_COLUMNS = ("2xx", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
# CPU time per 2xx sign-up during the run: the service's processes, the database server's.
CPU_COLUMNS = ("svc CPU ms/2xx", "db CPU ms/2xx")


def ms_text(value: float | None) -> str:
    """A latency in milliseconds, two decimals under 100; "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def number_text(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators; "-" when unknown."""
    return "-" if value is None else f"{value:,.{digits}f}"


def cpu_ms(value: float | None) -> str:
    """A CPU time per sign-up in milliseconds, to the microsecond; "-" when unknown."""
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def cpu_row(level: LevelResult) -> list[str]:
    """The cells of one run under L{CPU_COLUMNS}."""
    return [cpu_ms(level.service_cpu_ms_per_signup), cpu_ms(level.database_cpu_ms_per_signup)]


def load_row(load: LoadFigures) -> list[str]:
    """The cells of one run under L{SEED_COLUMNS} + L{EXTRA_COLUMNS}."""
    non2xx = f"{load.non2xx:,}"
    if load.bodyless_non2xx is not None:
        non2xx += f" ({load.bodyless_non2xx:,} bodyless)"
    return [
        f"{load.sent:,}",
        non2xx,
        f"{load.errors:,}",
        f"{load.timeouts:,}",
        f"{load.ok:,}",
        number_text(load.requests_per_second, 1),
        ms_text(load.p50_ms),
        ms_text(load.p90_ms),
        ms_text(load.p99_ms),
        ms_text(load.max_ms),
    ]


def box_table(headers: Sequence[str], rows: Sequence[Sequence[str]], split: int = 0) -> str:
    """
    A table drawn with box characters, like node's console.table that the original tool printed;
    numbers right-aligned. With C{split}, a double rule after that many columns sets the original
    tool's own columns apart from the ones added beside them.
    """
    widths = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
        for i in range(len(headers))
    ]

    def rule(left: str, middle: str, double: str, right: str) -> str:
        parts = []
        for i, width in enumerate(widths):
            if i:
                parts.append(double if split and i == split else middle)
            parts.append("─" * (width + 2))
        return left + "".join(parts) + right

    def line(cells: Sequence[str], header: bool) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            if i:
                parts.append("║" if split and i == split else "│")
            parts.append(" " + (cell.center(width) if header else cell.rjust(width)) + " ")
        return "│" + "".join(parts) + "│"

    out = [rule("┌", "┬", "╥", "┐"), line(headers, True), rule("├", "┼", "╫", "┤")]
    out.extend(line(row, False) for row in rows)
    out.append(rule("└", "┴", "╨", "┘"))
    return "\n".join(out)


def console_report(
    url: str,
    result: LevelResult,
    database: str | None = None,
) -> str:
    """What ``./bin/benchmark`` prints after a run: the table, then the checks beside it."""
    load = result.load
    lines = [
        "",
        f"{load.connections} connections for {load.duration:.1f} s against {url}"
        " (POST /users, a new sign-up each request, 10 s timeout)",
        box_table(
            SEED_COLUMNS + EXTRA_COLUMNS + CPU_COLUMNS,
            [load_row(load) + cpu_row(result)],
            split=len(SEED_COLUMNS),
        ),
        "  errors include timeouts (autocannon's count, as in the original tool's table);"
        " requests/s counts completed responses; latency covers completed responses;"
        " CPU ms/2xx: CPU time of the service's processes (svc) and of the database server (db)"
        " during the run, per 2xx answer.",
    ]
    if load.status_codes:
        codes = ", ".join(f"{code}: {count:,}" for code, count in sorted(load.status_codes.items()))
        lines.append(f"status codes: {codes}")
    cpu = [f"load generator {load.loadgen_cpu_percent:.0f}%"]
    if result.service_cpu_percent is not None:
        service = f"service {result.service_cpu_percent:.0f}%"
        processes = result.service_processes
        if processes:
            service += f" ({processes} process{'es' if processes > 1 else ''})"
        cpu.append(service)
    if result.database_cpu_percent is not None:
        cpu.append(f"database {result.database_cpu_percent:.0f}%")
    if result.other_cpu_percent is not None:
        cpu.append(f"everything else {result.other_cpu_percent:.0f}%")
    lines.append("CPU during the run, % of one core: " + ", ".join(cpu))
    if load.loadgen_cpu_percent > 90:
        lines.append(
            "  warning: the load generator used a whole core, so it may have limited the figures"
        )
    if result.other_cpu_percent is not None and result.other_cpu_percent > OTHER_CPU_WARNING:
        lines.append(
            "  warning: other processes were busy during the run: these figures understate "
            "what this machine can do"
        )
    if result.service_rss_mb is not None:
        count = result.service_processes
        across = f" across {count} process{'es' if count > 1 else ''}" if count else ""
        lines.append(f"service memory after the run: {result.service_rss_mb:.0f} MiB RSS{across}")
    where = f" (database {database})" if database else ""
    lines.append(f"nothing lost: {result.check.verdict}: {result.check.detail}{where}")
    if result.drained is not None and result.drain_seconds is not None:
        if result.drained:
            lines.append(
                f"drain: every stored user processed {result.drain_seconds:.1f} s after the load"
            )
        else:
            lines.append(
                f"drain: NOT drained after {result.drain_seconds:.0f} s: users still unprocessed"
            )
    return "\n".join(lines)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = True
) -> str:
    """
    A GitHub-flavoured markdown table: the first column left-aligned, the others right-aligned
    when C{numeric}, else left-aligned too.
    """
    aligns = [":---"] + ["---:" if numeric else ":---"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(out)
