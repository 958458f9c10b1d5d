"""The PNG charts of a sweep report: every target on the same axes, connections across."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from benchmark.args import REQUEST_TIMEOUT
from benchmark.figures import LevelResult, SweepResults

__all__ = ["draw_charts"]

# One colour and marker per target, stable across charts and reports.
_STYLES = {
    "squad": ("#1f77b4", "o"),
    "baseline": ("#d62728", "s"),
    "ceiling": ("#7f7f7f", "^"),
    "stored": ("#ff7f0e", "P"),
    "stored-processed": ("#8c564b", "X"),
    "reference-node": ("#2ca02c", "D"),
    "reference-node-cluster": ("#17becf", "d"),
}
_EXTRA_COLOURS = ["#9467bd", "#e377c2", "#bcbd22"]


def _style(label: str, index: int) -> tuple[str, str]:
    return _STYLES.get(label, (_EXTRA_COLOURS[index % len(_EXTRA_COLOURS)], "v"))


def _connections_axis(axes: Axes, levels: list[int]) -> None:
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator([float(level) for level in levels]))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("concurrent connections")
    axes.grid(True, which="major", alpha=0.3)


def _plot(
    axes: Axes,
    results: SweepResults,
    value: Callable[[LevelResult], float | None],
    annotate: bool = False,
) -> bool:
    drew = False
    for index, target in enumerate(results.targets):
        points = [
            (level.load.connections, y)
            for level in target.levels
            if (y := value(level)) is not None
        ]
        if not points:
            continue
        colour, marker = _style(target.label, index)
        axes.plot(
            [x for x, _ in points],
            [y for _, y in points],
            color=colour,
            marker=marker,
            label=target.label,
            clip_on=False,
        )
        if annotate:
            for x, y in points:
                axes.annotate(
                    f"{y:,.0f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=8,
                    color=colour,
                )
        drew = True
    return drew


def _title(results: SweepResults, what: str) -> str:
    return f"{what}\n{results.started}, {results.duration:g}s per level, POST /users"


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def draw_charts(results: SweepResults, folder: Path) -> list[Path]:
    """
    Write ``throughput.png``, ``latency.png``, ``failures.png`` (and ``memory.png`` when the
    service's memory was measured) into C{folder}; return their paths.
    """
    levels = sorted(results.levels)
    written: list[Path] = []

    figure, axes = plt.subplots(figsize=(8, 5))
    _plot(axes, results, lambda level: level.load.requests_per_second, annotate=True)
    _connections_axis(axes, levels)
    axes.set_ylabel("requests/s (completed responses)")
    axes.set_ylim(bottom=0)
    axes.set_title(_title(results, "Throughput"))
    axes.legend()
    written.append(_save(figure, folder / "throughput.png"))

    figure, (p50_axes, p99_axes) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for axes, name, value in (
        (p50_axes, "p50", lambda level: level.load.p50_ms),
        (p99_axes, "p99", lambda level: level.load.p99_ms),
    ):
        _plot(axes, results, value)
        _connections_axis(axes, levels)
        axes.set_yscale("log")
        axes.axhline(
            REQUEST_TIMEOUT * 1000, color="#444444", linestyle=":", linewidth=1, label="timeout"
        )
        axes.set_title(f"{name} latency")
        axes.legend()
    p50_axes.set_ylabel("milliseconds (log scale)")
    figure.suptitle(_title(results, "Latency of completed requests"))
    written.append(_save(figure, folder / "latency.png"))

    figure, axes = plt.subplots(figsize=(8, 5))
    _plot(axes, results, lambda level: float(level.load.failures))
    _connections_axis(axes, levels)
    axes.set_yscale("symlog", linthresh=1.0)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("failed requests: non-2xx + errors (timeouts included)")
    axes.set_title(_title(results, "Failures"))
    axes.legend()
    written.append(_save(figure, folder / "failures.png"))

    figure, axes = plt.subplots(figsize=(8, 5))
    if _plot(axes, results, lambda level: level.service_rss_mb):
        _connections_axis(axes, levels)
        axes.set_ylim(bottom=0)
        axes.set_ylabel("resident memory after the run (MiB, all processes)")
        axes.set_title(_title(results, "Server memory"))
        axes.legend()
        written.append(_save(figure, folder / "memory.png"))
    else:
        plt.close(figure)
    return written
