"""A sweep's target as a process: started in its own group, healthy before it is measured,
stopped with its whole group after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.load.runner import BENCHMARK_DIR
from benchmark.run.service import ServiceDown
from benchmark.sweep.targets import Target
from harness.groups import spawn, stop_group
from harness.probes import NotReady, http_status, wait_until

__all__ = ["running"]

ROOT = BENCHMARK_DIR.parent


@contextmanager
def running(target: Target, log_path: Path, service_pid: int | None = None) -> Iterator[int | None]:
    """
    Start C{target} (if it has a command) in its own process group, its output in
    C{log_path}, wait until it answers GET /health, yield its process id; stop the whole group
    afterwards, whatever happened. A target already running yields C{service_pid}.
    """
    if target.command is None:
        yield service_pid
        return
    env = {**os.environ, **target.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = spawn(target.command, log_path, env=env, cwd=ROOT)

    def healthy() -> bool:
        return 200 <= (http_status(target.url + "/health", timeout=2.0) or 0) < 300

    try:
        try:
            wait_until(
                healthy,
                target.startup_limit,
                f"the server for {target.url}",
                alive=lambda: process.poll() is None,
                interval=0.2,
            )
        except NotReady as error:
            raise ServiceDown(str(error)) from None
        yield process.pid
    finally:
        stop_group(process)
