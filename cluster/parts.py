"""What every part of the cluster is: a process group we started (``Child``), with its log and
the signal that stops it; how we wait for one to be ready; and what we tell the person running
the cluster (``say``, ``ClusterError``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.groups import signal_group, stop_group
from harness.probes import NotReady, wait_until


def say(message: str) -> None:
    print(f"squad: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class ClusterError(Exception):
    """Something the person running the cluster must fix; the message says what."""


@dataclass
class Child:
    """One started process (the leader of its own process group) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    # A squad instance's HTTP port (0 for the other parts).
    port: int = 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, number: int = signal.SIGKILL) -> None:
        signal_group(self.process, number)

    def stop(self, grace: float = 10.0, *, signalled: bool = False) -> bool:
        """Stop it (its stop signal unless ``signalled`` already, then SIGKILL after ``grace``
        s); True when it exited before the SIGKILL."""
        # The stop signal once: a second SIGTERM makes twistd try to stop a reactor already
        # stopping. The SIGKILL reaches the group too: no worker outlives its parent.
        return stop_group(self.process, grace, number=self.stop_signal, signalled=signalled)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class RunAs:
    """An account (other than ours) to run a part as: PostgreSQL refuses root."""

    uid: int
    gid: int


class Spawn(Protocol):
    """Starts a part as a ``Child`` of the cluster (``Cluster.spawn``), its log under the
    cluster's logs."""

    def __call__(
        self,
        name: str,
        argv: list[str],
        *,
        run_as: RunAs | None = None,
        stop_signal: int = signal.SIGTERM,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int = 0,
        after: Child | None = None,
    ) -> Child: ...


def wait_for(what: str, ready: Callable[[], bool], child: Child, limit: float) -> None:
    """Return once ``ready()``; raise ``ClusterError`` with the log's tail when ``child`` exits
    first or ``limit`` s pass."""
    try:
        wait_until(ready, limit, what, alive=lambda: child.alive)
    except NotReady as error:
        raise ClusterError(f"{error}:\n{child.log_tail()}") from None
