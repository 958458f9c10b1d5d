"""A sweep's target as a process: started in its own group, healthy before it is measured,
stopped with its whole group after."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchmark.load.runner import BENCHMARK_DIR
from benchmark.run.service import wait_until_healthy
from benchmark.sweep.targets import Target

__all__ = ["running"]

ROOT = BENCHMARK_DIR.parent


@contextmanager
def running(target: Target, log_path: Path) -> Iterator[int | None]:
    """
    Start C{target} (if it has a command) in its own process group, its output in
    C{log_path}, wait until it answers GET /health, yield its process id; stop the whole group
    afterwards, whatever happened.
    """
    if target.command is None:
        pid = os.environ.get("SQUAD_PID")
        yield int(pid) if pid and pid.isdigit() else None
        return
    env = {**os.environ, **target.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            target.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(target.url, target.startup_limit, alive=lambda: process.poll() is None)
        yield process.pid
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            # The group may outlive its leader (workers): make sure they are gone too.
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return
