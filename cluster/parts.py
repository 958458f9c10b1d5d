"""What every part of the cluster is: a process group we started (``Child``), with its log and
the signal that stops it, kept with the others in start order (``Parts``); how we wait for one
to be ready; and what we tell the person running the cluster (``say``, ``ClusterError``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.groups import signal_group, spawn, stop_group
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


@dataclass
class Parts:
    """The cluster's started processes, in the order they started, each with its log in
    ``logs/NAME.log``."""

    logs: Path
    children: list[Child] = field(default_factory=list)

    def spawn(
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
    ) -> Child:
        """Start a part (``after`` the one it replaces, if any)."""
        log_path = self.logs / f"{name}.log"
        process = spawn(
            argv,
            log_path,
            env=env,
            cwd=cwd,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
        )
        child = Child(name, process, log_path, stop_signal, port)
        # Beside the instance it replaces: the cluster stops neighbouring instances together.
        where = len(self.children) if after is None else self.children.index(after) + 1
        self.children.insert(where, child)
        self.note_groups()
        return child

    def remove(self, child: Child) -> None:
        """Forget ``child``, stopped."""
        self.children.remove(child)
        self.note_groups()

    def note_groups(self) -> None:
        # bin/cluster's exit trap kills these process groups if this program dies first.
        record = os.environ.get("SQUAD_CLUSTER_PGIDS")
        if record:
            live = "".join(f"{c.process.pid}\n" for c in self.children if c.alive)
            Path(record).write_text(live)

    def dead(self) -> list[Child]:
        return [child for child in self.children if not child.alive]


def wait_for(what: str, ready: Callable[[], bool], child: Child, limit: float) -> None:
    """Return once ``ready()``; raise ``ClusterError`` with the log's tail when ``child`` exits
    first or ``limit`` s pass."""
    try:
        wait_until(ready, limit, what, alive=lambda: child.alive)
    except NotReady as error:
        raise ClusterError(f"{error}:\n{child.log_tail()}") from None
