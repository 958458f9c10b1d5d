"""The console table of a run, and ``report.md`` (with ``results.json`` and charts) of a sweep."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmark.args import format_duration
from benchmark.figures import LevelResult, LoadFigures, SweepResults, TargetResult, sweep_to_json
from benchmark.targets import verdicts

__all__ = [
    "CPU_COLUMNS",
    "SEED_COLUMNS",
    "box_table",
    "console_report",
    "cpu_ms",
    "cpu_row",
    "markdown_table",
    "write_report",
]

# Percent of one core used by unrelated processes above which a run is flagged as disturbed.
OTHER_CPU_WARNING = 15.0

SEED_COLUMNS = ("requests sent", "non-2xx", "errors", "timeouts")
EXTRA_COLUMNS = ("2xx", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
# CPU time per 2xx sign-up during the run: the service's processes, the database server's.
CPU_COLUMNS = ("svc CPU ms/2xx", "db CPU ms/2xx")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _number(value: float | None, digits: int = 0) -> str:
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
        _number(load.requests_per_second, 1),
        _ms(load.p50_ms),
        _ms(load.p90_ms),
        _ms(load.p99_ms),
        _ms(load.max_ms),
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


LEVEL_COLUMNS = (
    "target",
    *SEED_COLUMNS,
    *EXTRA_COLUMNS,
    "stored",
    "nothing lost",
    "drain s",
    "RSS MiB (procs)",
    "CPU % svc/db/load/other",
    "CPU ms/2xx svc/db",
)


def _cpu_cell(level: LevelResult) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    return (
        f"{pct(level.service_cpu_percent)}/{pct(level.database_cpu_percent)}"
        f"/{level.load.loadgen_cpu_percent:.0f}/{pct(level.other_cpu_percent)}"
    )


def _level_row(target: TargetResult, level: LevelResult) -> list[str]:
    if level.drain_seconds is None:
        drain = "-"
    elif level.drained:
        drain = f"{level.drain_seconds:.1f}"
    else:
        drain = f"> {level.drain_seconds:.0f}"
    return [
        f"**{target.label}**",
        *load_row(level.load),
        "-" if level.check.stored is None else f"{level.check.stored:,}",
        level.check.verdict,
        drain,
        _number(level.service_rss_mb)
        + (f" ({level.service_processes})" if level.service_processes else ""),
        _cpu_cell(level),
        " / ".join(cpu_row(level)),
    ]


def _summary(results: SweepResults, title: str, cell: str) -> str:
    headers = ["target", *(f"{level} conns" for level in results.levels)]
    rows = []
    for target in results.targets:
        by_level = {level.load.connections: level for level in target.levels}
        row = [f"**{target.label}**"]
        for connections in results.levels:
            level = by_level.get(connections)
            if level is None:
                row.append("-")
            elif cell == "rps":
                row.append(_number(level.load.requests_per_second, 0))
            elif cell == "p99":
                row.append(_ms(level.load.p99_ms))
            elif cell == "cpu":
                row.append(" / ".join(cpu_row(level)))
            else:
                row.append(f"{level.load.failures:,}")
        rows.append(row)
    return f"**{title}**\n\n" + markdown_table(headers, rows)


def _bodyless_summary(results: SweepResults) -> list[str]:
    """For the original tool's rows: its non-2xx split into bodyless first requests and the rest."""
    rows = []
    for target in results.targets:
        by_level = {level.load.connections: level.load for level in target.levels}
        if not any(load.bodyless_non2xx is not None for load in by_level.values()):
            continue
        row = [f"**{target.label}**"]
        for connections in results.levels:
            load = by_level.get(connections)
            if load is None or load.bodyless_non2xx is None:
                row.append("-")
            else:
                row.append(f"{load.bodyless_non2xx:,} + {load.non2xx - load.bodyless_non2xx:,}")
        rows.append(row)
    if not rows:
        return []
    headers = ["target", *(f"{level} conns" for level in results.levels)]
    return [
        "**The original tool's non-2xx: bodyless first requests + anything else**",
        "",
        "The original client sets each body in its response handler, so every connection's first"
        " request goes out with no body; squad refuses it with 400 (an empty sign-up is not a"
        " user). The verdicts count only the anything-else.",
        "",
        markdown_table(headers, rows),
        "",
    ]


def render_markdown(results: SweepResults, charts: Sequence[str]) -> str:
    """The text of ``report.md`` for C{results}, linking the chart files named in C{charts}."""
    out = [
        f"# squad benchmark sweep, {results.started}",
        "",
        f"Produced by `{results.command}` on the machine below: every level is "
        f"{format_duration(results.duration)} of `POST /users` with a new random sign-up body "
        "per request (autocannon, pipelining 1, 10 s request timeout), after `GET /health` and "
        "`DELETE /collections`. Every target runs on the same machine, one after the other, "
        "against the same database server.",
        "",
        "## Targets",
        "",
        markdown_table(
            ["target", "what it is", "URL"],
            [
                [f"**{target.label}**", target.description, f"`{target.url}`"]
                for target in results.targets
            ],
            numeric=False,
        ),
        "",
    ]
    disturbed = [
        f"{target.label} at {level.load.connections}"
        for target in results.targets
        for level in target.levels
        if level.other_cpu_percent is not None and level.other_cpu_percent > OTHER_CPU_WARNING
    ]
    if disturbed:
        out += [
            f"> **Disturbed runs**: other processes used more than {OTHER_CPU_WARNING:.0f}% of a "
            f"core during {', '.join(disturbed)} connections; those figures understate this "
            "machine. Run the sweep again on a quiet machine before quoting them.",
            "",
        ]
    failed = [target for target in results.targets if target.error]
    for target in failed:
        out += [f"> **{target.label} was not measured**: {target.error}", ""]
    out += [
        "## Summary",
        "",
        _summary(results, "Requests/s", "rps"),
        "",
        _summary(results, "p99 latency (ms)", "p99"),
        "",
        _summary(results, "Failed requests (non-2xx + errors, timeouts included)", "failures"),
        "",
        _summary(
            results,
            "CPU per 2xx sign-up (ms): service / database, during the run",
            "cpu",
        ),
        "",
    ]
    out += _bodyless_summary(results)
    judged = verdicts(results)
    if judged:
        out += [
            "## Against the targets",
            "",
            "squad's performance targets, judged on this sweep alone:",
            "",
            markdown_table(
                ["target", "measured", "verdict"],
                [
                    [verdict.target, verdict.measured, "met" if verdict.met else "**not met**"]
                    for verdict in judged
                ],
                numeric=False,
            ),
            "",
        ]
    if charts:
        out += ["## Charts", ""]
        out += [f"![{Path(name).stem}]({name})" for name in charts]
        out += [""]
    for connections in results.levels:
        rows = [
            _level_row(target, level)
            for target in results.targets
            for level in target.levels
            if level.load.connections == connections
        ]
        if rows:
            out += [f"## {connections} connections", "", markdown_table(LEVEL_COLUMNS, rows), ""]
    out += [
        "## How to read the tables",
        "",
        "- *requests sent*, *non-2xx*, *errors*, *timeouts*: the original tool's table, with "
        "autocannon's meanings: *errors* counts every failed request, timeouts included.",
        "- *requests/s*: completed responses per second (autocannon's mean of per-second "
        "samples). *Latency* covers completed responses only: a request that timed out after "
        "10 s is counted under timeouts, not in p99.",
        "- *stored*: users the run added to the database; *nothing lost* is PASS when that is at "
        "least the 2xx count (a user can be stored and its answer still time out).",
        "- *drain s*: with `--drain`, seconds after the load until no stored user had "
        "`processed: false`.",
        "- *RSS MiB (procs)*: resident memory of all the server's processes after the run, and "
        "how many there were; *CPU %*: CPU "
        "time during the run in percent of one core, for the server, the database server, "
        "the load generator (autocannon) and everything else on the machine. The load "
        "generator is not what limits a target while its share stays clearly under 100%; "
        f"a run where *other* exceeds {OTHER_CPU_WARNING:.0f}% was disturbed by unrelated work.",
        "- *CPU ms/2xx svc/db*: user plus system CPU time of the server's whole process tree "
        "(svc) and of the database server's process (db) during the run, divided by the run's "
        "2xx answers; *-* where not read (the database of a target that stores nothing). Only "
        "the load's window counts: work a target defers past it (slow steps that end after the "
        "load, password hashes) is not in it, so a short run understates it; 45 s levels leave "
        "most slow-step writes inside the window.",
        "",
    ]
    for note in results.notes:
        out.append(f"- {note}")
    if results.notes:
        out.append("")
    out += [
        "## Machine",
        "",
        markdown_table(
            ["", ""], [[key, value] for key, value in results.machine.items()], numeric=False
        ),
        "",
        "## Versions",
        "",
        markdown_table(
            ["", ""], [[key, value] for key, value in results.versions.items()], numeric=False
        ),
        "",
    ]
    return "\n".join(out)


def write_report(results: SweepResults, folder: Path) -> Path:
    """
    Write ``report.md``, ``results.json`` and the PNG charts into C{folder} (created if
    needed) and return the path of ``report.md``.
    """
    from benchmark.charts import draw_charts

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(sweep_to_json(results))
    charts = [path.name for path in draw_charts(results, folder)]
    report = folder / "report.md"
    report.write_text(render_markdown(results, charts))
    return report
