"""What the process table says, through psutil: a process's children and descendants, its
group's members, its start time, and the CPU time and memory of a set of processes. A process
that exits while it is read is left out; one that cannot be read at all answers "unknown"."""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

__all__ = [
    "alive",
    "children",
    "cpu_seconds",
    "descendants",
    "environment",
    "executable",
    "group_members",
    "listening_pids",
    "machine_busy_seconds",
    "parent",
    "process_tree",
    "rss_megabytes",
    "started",
]

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def _living(processes: Iterable[psutil.Process]) -> list[int]:
    found = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except _GONE:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        return bool(_living([psutil.Process(pid)]))
    except _GONE:
        return False


def children(pid: int) -> set[int]:
    """The live (not zombie) children of ``pid``; empty when ``pid`` is gone."""
    try:
        return set(_living(psutil.Process(pid).children()))
    except _GONE:
        return set()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children first; empty when ``pid`` is gone."""
    try:
        return _living(psutil.Process(pid).children(recursive=True))
    except _GONE:
        return []


def process_tree(root: int) -> set[int]:
    """``root`` and every live process below it; empty when ``root`` is gone."""
    if not psutil.pid_exists(root):
        return set()
    return {root, *descendants(root)}


def group_members(pgid: int) -> set[int]:
    """The live processes of process group ``pgid``."""
    found = set()
    for pid in _living(psutil.process_iter()):
        try:
            if os.getpgid(pid) == pgid:
                found.add(pid)
        except ProcessLookupError:
            continue
    return found


def started(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), so that a reused pid is no match; None
    when it is gone."""
    try:
        return float(psutil.Process(pid).create_time())
    except _GONE:
        return None


def parent(pid: int) -> int | None:
    """The parent of ``pid``; None when it is gone."""
    try:
        return int(psutil.Process(pid).ppid())
    except _GONE:
        return None


def executable(pid: int) -> str | None:
    """The program file ``pid`` runs; None when it cannot be read."""
    try:
        return str(psutil.Process(pid).exe()) or None
    except _GONE:
        return None


def environment(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with; None when it cannot be read."""
    try:
        return dict(psutil.Process(pid).environ())
    except _GONE:
        return None


def listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on ``port`` (any address) that may be
    read (as root, all of them)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return set()
    return {
        c.pid
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


def cpu_seconds(pids: Iterable[int]) -> float | None:
    """User plus system CPU time that ``pids`` have used so far; None when none could be read."""
    total = 0.0
    found = False
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except _GONE:
            continue
        total += times.user + times.system
        found = True
    return total if found else None


def rss_megabytes(pids: Iterable[int]) -> float | None:
    """The resident memory of ``pids`` together, in MiB; None when none could be read."""
    total = 0
    found = False
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except _GONE:
            continue
        found = True
    return total / (1024.0 * 1024.0) if found else None


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent running processes so far: every core's user, nice
    and system time, plus time stolen by the hypervisor. Interrupt time is left out: on
    loopback it is mostly a benchmark's own network traffic, which no process is charged for."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + getattr(times, "steal", 0.0))
