"""Processes started in a process group of their own, with their output in a log, and signalled
or stopped whole: the group and every descendant that left it, so no worker outlives its parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.processes import descendants

__all__ = ["group_gone", "kill_group", "signal_group", "signal_tree", "spawn", "stop_group"]


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: int | None = None,
    group: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session (so of a process group whose id is its
    pid), reading nothing, its output and errors appended to ``log``; as ``user`` and ``group``
    (with no supplementary groups) when given."""
    with open(log, "ab") as output:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
        )


def signal_group(process: subprocess.Popen[bytes], number: int) -> None:
    """Send ``number`` to ``process``'s group (nothing when the group is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, number)


def signal_tree(process: subprocess.Popen[bytes], number: int) -> None:
    """Send ``number`` to ``process``'s group and to each of its descendants outside it, once
    each: a second SIGTERM makes twistd try to stop a reactor already stopping."""
    below = descendants(process.pid) if process.poll() is None else []
    signal_group(process, number)
    for pid in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) != process.pid:
                os.kill(pid, number)


def stop_group(
    process: subprocess.Popen[bytes],
    grace: float = 10.0,
    *,
    number: int = signal.SIGTERM,
    signalled: bool = False,
) -> bool:
    """Stop ``process`` and its group: ``number`` (unless ``signalled`` already), then SIGKILL
    to what is left after ``grace`` s, or at once when the leader exits. True when the leader
    exited before the SIGKILL."""
    by_itself = True
    if process.poll() is None:
        if not signalled:
            signal_tree(process, number)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            by_itself = False
    signal_tree(process, signal.SIGKILL)
    process.wait()
    return by_itself


def group_gone(pgid: int) -> bool:
    """Whether no process of group ``pgid`` is left (a zombie not yet reaped still counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def kill_group(process: subprocess.Popen[bytes], within: float = 5.0) -> bool:
    """SIGKILL ``process``'s group and its descendants (frozen ones too), and return once none
    is left, or after ``within`` s: True when none is left. Members that are not the caller's
    children go when their new parent reaps them, so a test's sockets are closed after it."""
    signal_tree(process, signal.SIGCONT)
    signal_tree(process, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + within
    while not group_gone(process.pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
