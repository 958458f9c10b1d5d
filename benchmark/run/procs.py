"""
The processes behind a port, read from /proc: the service's memory (RSS) and CPU time, and the
database's CPU time, so a run shows where the machine's two cores went. Linux only; elsewhere
every function answers "unknown" (an empty set, None).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "cpu_seconds",
    "listening_pids",
    "machine_busy_seconds",
    "process_tree",
    "rss_megabytes",
    "service_processes",
]

PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(PROC / str(pid) / "stat")
    if text is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rfind(")") + 2 :].split()


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _executable(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on C{port} (any address)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        text = _read(PROC / "net" / table)
        if not text:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    if not inodes:
        return set()
    targets = {f"socket:[{inode}]" for inode in inodes}
    owners: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) in targets:
                    owners.add(int(entry.name))
                    break
            except OSError:
                continue
    return owners


def process_tree(root: int) -> set[int]:
    """C{root} and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in found or not (PROC / str(pid)).exists():
            continue
        found.add(pid)
        pending.extend(children.get(pid, []))
    return found


def service_processes(port: int, pid: int | None = None) -> set[int]:
    """
    Every process of the service listening on C{port}: the tree under C{pid} when given, else
    the owners of the listening socket, climbing to parents that run the same executable (a
    supervisor of worker processes may not hold the socket itself; a shell that started the
    service runs another program and is not counted).
    """
    if pid is not None:
        return process_tree(pid)
    # Never climb into the benchmark's own ancestors (a test that started the service, say).
    ours: set[int] = set()
    current: int | None = os.getpid()
    while current and current not in ours:
        ours.add(current)
        current = _parent(current)
    roots: set[int] = set()
    for owner in listening_pids(port):
        root = owner
        executable = _executable(owner)
        while True:
            parent = _parent(root)
            if not parent or parent <= 1 or parent in ours or _executable(parent) != executable:
                break
            root = parent
        roots.add(root)
    pids: set[int] = set()
    for root in roots:
        pids |= process_tree(root)
    return pids


def rss_megabytes(pids: Iterable[int]) -> float | None:
    """The resident memory of C{pids} together, in MiB; None when none could be read."""
    total = 0
    found = False
    for pid in pids:
        text = _read(PROC / str(pid) / "status")
        if not text:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                found = True
                break
    return total / 1024.0 if found else None


def cpu_seconds(pids: Iterable[int]) -> float | None:
    """User plus system CPU time that C{pids} have used so far; None when none could be read."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    found = False
    for pid in pids:
        fields = _stat_fields(pid)
        if fields and len(fields) > 12:
            # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted from field 3 here.
            total += int(fields[11]) + int(fields[12])
            found = True
    return total / ticks if found else None


def machine_busy_seconds() -> float | None:
    """
    CPU time the whole machine has spent running processes so far (every core, user and system
    time, plus time stolen by the hypervisor), from /proc/stat; None when it cannot be read.
    Interrupt time is left out: on loopback that is mostly the benchmark's own network traffic,
    which no process is charged for.
    """
    text = _read(PROC / "stat")
    if not text or not text.startswith("cpu "):
        return None
    fields = [int(value) for value in text.split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = sum(fields[:3]) + fields[7]
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return busy / ticks
