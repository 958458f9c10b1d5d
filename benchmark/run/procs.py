"""
The service behind a port: every process of it, found from the socket it listens on, so a run
reads the memory and CPU time of the whole service (a supervisor and its workers), not of the one
process that holds the socket. The process table itself is read through ``harness.processes``.
"""

from __future__ import annotations

import os

from harness.processes import executable, listening_pids, parent, process_tree

__all__ = ["service_processes"]


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
        current = parent(current)
    roots: set[int] = set()
    for owner in listening_pids(port):
        root = owner
        program = executable(owner)
        while True:
            above = parent(root)
            if not above or above <= 1 or above in ours or executable(above) != program:
                break
            root = above
        roots.add(root)
    pids: set[int] = set()
    for root in roots:
        pids |= process_tree(root)
    return pids
