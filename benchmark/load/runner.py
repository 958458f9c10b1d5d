"""One autocannon run through ``runner.js``: the load of ``./bin/benchmark``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from benchmark.args import REQUEST_TIMEOUT
from benchmark.figures import LoadFigures

__all__ = ["BENCHMARK_DIR", "LOAD_DIR", "LoadFailed", "node_binary", "run_load", "runner_command"]

LOAD_DIR = Path(__file__).resolve().parent
# The npm project whose node_modules the load runners and the Node reference resolve from.
BENCHMARK_DIR = LOAD_DIR.parent


class LoadFailed(Exception):
    """The load generator could not run or did not report its figures."""


def node_binary() -> str:
    """The ``node`` to run: ``$NODE`` if set, else the first on PATH."""
    node = os.environ.get("NODE") or shutil.which("node")
    if not node:
        raise LoadFailed("node (Node.js 20 or newer) is needed for autocannon and is not on PATH")
    return node


def runner_command(
    url: str,
    connections: int,
    duration: float,
    timeout: float = REQUEST_TIMEOUT,
    rate: int | None = None,
) -> list[str]:
    """
    The command that loads C{url} with C{connections} connections for C{duration} seconds, at
    C{rate} requests/s in total when given (autocannon's overallRate).
    """
    if not (BENCHMARK_DIR / "node_modules" / "autocannon").is_dir():
        raise LoadFailed(
            "autocannon is not installed: run ./bin/setup (it runs npm ci in benchmark/)"
        )
    config: dict[str, object] = {
        "url": url,
        "connections": connections,
        "duration": duration,
        "timeout": timeout,
    }
    if rate is not None:
        config["rate"] = rate
    return [node_binary(), str(LOAD_DIR / "runner.js"), json.dumps(config)]


def run_load(
    url: str, connections: int, duration: float, progress: bool = True, rate: int | None = None
) -> LoadFigures:
    """
    Load C{url} and return the figures. The runner's progress line goes to our stderr (the
    live display) unless C{progress} is false. Ctrl-C ends the run early: the runner stops
    autocannon and still reports what it measured.
    """
    command = runner_command(url, connections, duration, rate=rate)
    return LoadFigures.from_runner(run_runner(command, progress, "the load generator"))


def run_runner(command: list[str], progress: bool, what: str) -> dict[str, Any]:
    """Run a node runner (``command``) to its end and return the JSON figures it prints last.
    Its progress goes to our stderr unless C{progress} is false; C{what} names it in errors."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=None if progress else subprocess.DEVNULL,
        text=True,
    )
    try:
        output, _ = process.communicate()
    except KeyboardInterrupt:
        # A Ctrl-C at the terminal reached the runner too (same process group): it stops
        # autocannon and reports within a second. Tell it ourselves if it did not hear it.
        try:
            output, _ = process.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate()
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise LoadFailed(f"{what} exited with status {process.returncode}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures
