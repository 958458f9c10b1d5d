"""What ``--rate`` prints after its run, and its ``report.md`` and ``rate.json``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from benchmark.args import format_duration
from benchmark.figures import level_to_dict
from benchmark.rate.figures import RateRun
from benchmark.rate.lag import BUCKET_SECONDS, LagFigures, LagReport
from benchmark.rate.sampling import (
    FINISH_BACKLOG,
    HASH_BACKLOG,
    HASH_OLDEST,
    METRICS,
    SAMPLE_INTERVAL,
    SLOW_OLDEST,
    SLOW_STEPS_IN_MEMORY,
    SLOW_STEPS_RUNNING,
    Sample,
)
from benchmark.rate.verdicts import judge
from benchmark.rate.wait import WAIT_LIMIT
from benchmark.report.tables import (
    CPU_COLUMNS,
    EXTRA_COLUMNS,
    SEED_COLUMNS,
    box_table,
    console_report,
    cpu_ms,
    cpu_row,
    load_row,
    markdown_table,
)

__all__ = ["console_text", "render_markdown", "write_rate_report"]

_SHORT = {
    SLOW_STEPS_IN_MEMORY: "in memory",
    SLOW_STEPS_RUNNING: "steps running",
    HASH_BACKLOG: "hash backlog",
    HASH_OLDEST: "hash oldest s",
    FINISH_BACKLOG: "finish backlog",
    SLOW_OLDEST: "step oldest s",
}
SAMPLE_COLUMNS = ("s", "phase", *(_SHORT[name] for name in METRICS), "WAL MiB", "RSS MiB")


def _cell(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _sample_row(sample: Sample) -> list[str]:
    return [
        f"{sample.at:.0f}",
        sample.phase,
        *(
            _cell(sample.metrics.get(name), 1 if name.endswith("_seconds") else 0)
            for name in METRICS
        ),
        _cell(None if sample.wal_bytes is None else sample.wal_bytes / (1024 * 1024), 1),
        _cell(sample.rss_mb),
    ]


def _thin(samples: list[Sample], most: int) -> list[Sample]:
    """At most C{most} samples, evenly spread, the first and the last always kept."""
    if len(samples) <= most:
        return samples
    step = (len(samples) - 1) / (most - 1)
    return [samples[round(i * step)] for i in range(most)]


def _lag_rows(lag: LagReport) -> list[list[str]]:
    def row(name: str, figures: LagFigures) -> list[str]:
        return [
            name,
            f"{figures.created:,}",
            f"{figures.processed:,}",
            f"{figures.unprocessed:,}",
            _cell(figures.p50, 2),
            _cell(figures.p99, 2),
            _cell(figures.max, 2),
        ]

    rows = [row(f"{b.start:g}-{b.end:g} s", b.lag) for b in lag.buckets]
    rows.append(row("all", lag.overall))
    return rows


LAG_COLUMNS = ("created", "users", "processed", "not processed", "p50 s", "p99 s", "max s")


def _missing(samples: list[Sample]) -> list[str]:
    return [name for name in METRICS if all(s.metrics.get(name) is None for s in samples)]


def _processed_lines(run: RateRun) -> list[str]:
    wait = run.wait
    if wait is None:
        return ["every user processed: not measured (the database could not be read)"]
    if not wait.processed:
        left = "an unknown number of" if wait.remaining is None else f"{wait.remaining:,}"
        return [
            f"every user processed: NO, stopped waiting {wait.seconds + run.wait_offset:.0f} s "
            f"after the load (the wait's limit: {WAIT_LIMIT:.0f} s) with {left} users not "
            "processed"
        ]
    after = run.processed_after_load
    last = "" if after is None else f"the last slow step ended {after:.1f} s after the load; "
    return [
        f"every user processed: {last}the database counted 0 unprocessed "
        f"{wait.seconds + run.wait_offset:.1f} s after the load"
    ]


def console_text(run: RateRun, folder: Path | None) -> str:
    """What ``--rate`` prints after the run."""
    load = run.result.load
    lines = [
        console_report(run.url, run.result, run.database),
        f"offered {run.rate:,} sign-ups/s, answered {load.requests_per_second:,.1f} req/s",
        f"CPU per 2xx sign-up during the load: service "
        f"{cpu_ms(run.result.service_cpu_ms_per_signup)} ms, database "
        f"{cpu_ms(run.result.database_cpu_ms_per_signup)} ms",
        "",
        f"samples every {SAMPLE_INTERVAL:g} s (s: since the load started; 'after': the wait), "
        f"WAL {run.wal or 'not available'}:",
        box_table(SAMPLE_COLUMNS, [_sample_row(s) for s in _thin(run.samples, 40)], split=2),
    ]
    missing = _missing(run.samples)
    if missing:
        lines.append(f"  not available in /metrics: {', '.join(missing)}")
    if run.lag is not None:
        lines += [
            "",
            "slow-step lag (date_updated - date_created), by "
            f"{BUCKET_SECONDS:g} s of date_created:",
            box_table(LAG_COLUMNS, _lag_rows(run.lag)),
        ]
    lines += ["", *_processed_lines(run), "", "against the sustained-load targets:"]
    for judgement in judge(run):
        word = {True: "met", False: "NOT MET", None: "not judged"}[judgement.met]
        lines.append(f"  {word:>10}  {judgement.target}: {judgement.measured}")
    lines += [f"  note: {note}" for note in run.notes]
    if folder is not None:
        lines += ["", f"report: {folder / 'report.md'}"]
    return "\n".join(lines)


def render_markdown(run: RateRun) -> str:
    """The text of ``report.md`` for a ``--rate`` run."""
    load = run.result.load
    out = [
        f"# squad at a fixed rate, {run.started}",
        "",
        f"Produced by `{run.command}` against `{run.url}` (database `{run.database}`): "
        f"{run.rate:,} sign-ups/s offered in total over {load.connections} connections for "
        f"{format_duration(run.duration)} (autocannon's `overallRate`, `POST /users` with a new "
        "random sign-up body per request, 10 s request timeout), after `GET /health` and "
        "`DELETE /collections`; then a wait until every user is processed.",
        "",
        "## Against the sustained-load targets",
        "",
        markdown_table(
            ["target", "measured", "verdict"],
            [
                [
                    j.target,
                    j.measured,
                    {True: "met", False: "**not met**", None: "not judged"}[j.met],
                ]
                for j in judge(run)
            ],
            numeric=False,
        ),
        "",
        "## The answers",
        "",
        markdown_table(
            [*SEED_COLUMNS, *EXTRA_COLUMNS, *CPU_COLUMNS, "offered/s", "nothing lost"],
            [
                [
                    *load_row(load),
                    *cpu_row(run.result),
                    f"{run.rate:,}",
                    f"{run.result.check.verdict}: {run.result.check.detail}",
                ]
            ],
        ),
        "",
        f"CPU during the load, % of one core: service {_cell(run.result.service_cpu_percent)}, "
        f"database {_cell(run.result.database_cpu_percent)}, load generator "
        f"{load.loadgen_cpu_percent:.0f}, everything else {_cell(run.result.other_cpu_percent)}; "
        f"per 2xx sign-up: service {cpu_ms(run.result.service_cpu_ms_per_signup)} ms, database "
        f"{cpu_ms(run.result.database_cpu_ms_per_signup)} ms (the slow steps and hashes that "
        "end after the load are not in it). "
        f"Service memory after the load: {_cell(run.result.service_rss_mb)} MiB RSS"
        + (
            f" across {run.result.service_processes} processes."
            if run.result.service_processes
            else "."
        ),
        "",
        "## Processed",
        "",
        *_processed_lines(run),
        "",
    ]
    if run.lag is not None:
        out += [
            f"## Slow-step lag by {BUCKET_SECONDS:g} s of `date_created`",
            "",
            "`date_updated - date_created` of every processed user (squad stamps `date_updated` "
            "when the slow step ends; the finish writer writes it with `processed: true` soon "
            "after), read once after the wait; buckets count from the start of the load.",
            "",
            markdown_table(LAG_COLUMNS, _lag_rows(run.lag)),
            "",
        ]
    out += [
        f"## Samples (every {SAMPLE_INTERVAL:g} s)",
        "",
        f"From `GET /metrics`, the size of `{run.wal or 'the WAL (not found)'}` and the "
        "service's RSS; *s* counts from the start of the load, *after* is the wait.",
        "",
        markdown_table(list(SAMPLE_COLUMNS), [_sample_row(s) for s in run.samples]),
        "",
    ]
    missing = _missing(run.samples)
    if missing:
        out += [f"Not available in squad's /metrics: {', '.join(f'`{m}`' for m in missing)}.", ""]
    for note in run.notes:
        out.append(f"- {note}")
    if run.notes:
        out.append("")
    return "\n".join(out)


def _json(run: RateRun) -> str:
    data = asdict(run)
    data["result"] = level_to_dict(run.result)
    data["judgements"] = [asdict(j) for j in judge(run)]
    data["processed_after_load"] = run.processed_after_load
    data["confirmed_after_load"] = run.confirmed_after_load
    return json.dumps(data, indent=2) + "\n"


def write_rate_report(run: RateRun, folder: Path) -> Path:
    """Write ``report.md`` and ``rate.json`` into C{folder}; return the path of ``report.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rate.json").write_text(_json(run))
    report = folder / "report.md"
    report.write_text(render_markdown(run))
    return report
