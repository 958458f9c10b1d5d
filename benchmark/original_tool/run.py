"""
``./bin/benchmark --original-tool``: the original challenge's client, and what its non-2xx were.

The judges run the original tool, not ours, so this runs that client's behaviour on the versions
it pinned (``benchmark/load/original-tool/runner.js``, autocannon 4.6.0 and faker 4.1.0): the body
is set in autocannon's ``response`` handler, so each connection's first request goes out with
``Content-Type: application/json`` and no body, and squad refuses it with 400 (an empty sign-up is
not a user). This module runs it after GET /health and DELETE /collections, prints the original's
four-column table, and beside it squad's own count of the answers (``/metrics`` before and after
the run: ``POST /users`` answers by status, error answers by their machine code), then says in a
sentence which non-2xx were bodyless first requests and which were anything else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

from benchmark.args import REQUEST_TIMEOUT
from benchmark.figures import ORIGINAL_TOOL_LABEL
from benchmark.load.runner import LOAD_DIR, LoadFailed, node_binary, run_runner
from benchmark.original_tool.figures import (
    OriginalRun,
    OriginalToolFigures,
    Samples,
    SquadView,
    metric_samples,
    squad_view,
)
from benchmark.run.service import check_health, flush

__all__ = [
    "ORIGINAL_TOOL_DIR",
    "SWEEP_DESCRIPTION",
    "SWEEP_LABEL",
    "measure_original",
    "run_original_tool",
    "runner_command",
]

ORIGINAL_TOOL_DIR = LOAD_DIR / "original-tool"
SWEEP_LABEL = ORIGINAL_TOOL_LABEL
SWEEP_DESCRIPTION = (
    "squad at URL again, loaded by the original challenge's client (autocannon 4.6.0, faker "
    "4.1.0, body set after each response: each connection's first request has none and is "
    "refused 400); `benchmark/load/original-tool/`"
)


def _scrape(base_url: str, timeout: float = 10.0) -> tuple[Samples | None, str | None]:
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=timeout) as response:
            return metric_samples(response.read().decode("utf-8", "replace")), None
    except urllib.error.HTTPError as error:
        return None, f"GET /metrics answered {error.code}"
    except (OSError, ValueError) as error:
        return None, f"GET /metrics failed ({error})"


def runner_command(
    url: str, connections: int, duration: float, timeout: float = REQUEST_TIMEOUT
) -> list[str]:
    """The command that runs the original tool against C{url}."""
    if not (ORIGINAL_TOOL_DIR / "node_modules" / "autocannon").is_dir():
        raise LoadFailed(
            "autocannon 4.6.0 is not installed: run ./bin/setup (npm ci in "
            "benchmark/load/original-tool/)"
        )
    config = {"url": url, "connections": connections, "duration": duration, "timeout": timeout}
    return [node_binary(), str(ORIGINAL_TOOL_DIR / "runner.js"), json.dumps(config)]


def run_original_tool(
    url: str, connections: int, duration: float, progress: bool = True
) -> OriginalToolFigures:
    """Run the original tool once against C{url} and return its figures."""
    figures = run_runner(runner_command(url, connections, duration), progress, "the original tool")
    return OriginalToolFigures.from_runner(figures)


def measure_original(
    url: str,
    connections: int,
    duration: float,
    progress: bool = True,
    tell: Callable[[str], None] | None = None,
) -> OriginalRun:
    """
    The original's procedure (GET /health, DELETE /collections, the load) with squad's
    ``/metrics`` read just before and just after the load. Raises
    L{benchmark.run.service.ServiceDown} or L{LoadFailed} as L{benchmark.run.measure.measure} does.
    """
    check_health(url)
    warning = flush(url)
    if warning and tell is not None:
        tell(f"warning: {warning}")
    before, problem = _scrape(url)
    figures = run_original_tool(url, connections, duration, progress=progress)
    after, later_problem = _scrape(url) if before is not None else (None, problem)
    if before is None or after is None:
        view = SquadView(problem=problem or later_problem)
    else:
        view = squad_view(before, after)
    return OriginalRun(figures, view)
