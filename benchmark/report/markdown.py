"""``report.md`` of a sweep, with its ``results.json`` and charts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmark.args import format_duration
from benchmark.figures import LevelResult, SweepResults, TargetResult, sweep_to_json
from benchmark.report.tables import (
    EXTRA_COLUMNS,
    OTHER_CPU_WARNING,
    SEED_COLUMNS,
    cpu_row,
    load_row,
    markdown_table,
    ms_text,
    number_text,
)
from benchmark.report.verdicts import verdicts

__all__ = ["render_markdown", "write_report"]


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
        number_text(level.service_rss_mb)
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
                row.append(number_text(level.load.requests_per_second, 0))
            elif cell == "p99":
                row.append(ms_text(level.load.p99_ms))
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
    from benchmark.report.charts import draw_charts

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(sweep_to_json(results))
    charts = [path.name for path in draw_charts(results, folder)]
    report = folder / "report.md"
    report.write_text(render_markdown(results, charts))
    return report
