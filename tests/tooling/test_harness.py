"""The shared harness against real processes and sockets: a process group started, read through
the process table, and stopped whole; ports found free, opened and waited for."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from harness.groups import group_gone, kill_group, signal_tree, spawn, stop_group
from harness.probes import NotReady, free_port, http_status, port_open, wait_port
from harness.processes import (
    children,
    cpu_seconds,
    descendants,
    group_members,
    listening_pids,
    machine_busy_seconds,
    process_tree,
    rss_megabytes,
    started,
)

# A parent that starts a child (in its group) and a grandchild that leaves the group (setsid),
# prints their pids, then burns a little CPU and waits; with IGNORE_TERM it ignores SIGTERM.
FAMILY = r"""
import os, signal, subprocess, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
child = subprocess.Popen(sleeper)
away = subprocess.Popen(sleeper, start_new_session=True)
print(child.pid, away.pid, flush=True)
end = time.process_time() + 0.2
while time.process_time() < end:
    pass
time.sleep(60)
"""


class Family:
    """FAMILY started with ``spawn``; its pids once it has printed them."""

    def __init__(self, test: SynchronousTestCase, **env: str) -> None:
        self.log = Path(test.mktemp())
        self.process = spawn([sys.executable, "-c", FAMILY], self.log, env={**os.environ, **env})
        test.addCleanup(kill_group, self.process)
        deadline = time.monotonic() + 20
        while not self.log.read_text().strip():
            assert time.monotonic() < deadline, "the family did not start"
            time.sleep(0.02)
        child, away = self.log.read_text().split()
        self.child, self.away = int(child), int(away)
        test.addCleanup(_kill, self.away)

    def all_gone(self) -> bool:
        return not any(_alive(pid) for pid in (self.process.pid, self.child, self.away))


def _alive(pid: int) -> bool:
    return pid in process_tree(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _eventually(check: Callable[[], bool], limit: float = 5.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


class ProcessTableTests(SynchronousTestCase):
    def test_descendants_children_group_and_usage(self) -> None:
        """A started process leads its own group; its children and descendants include the one
        that left the group, its group does not; its CPU time, memory and start time read."""
        family = Family(self)
        leader = family.process.pid
        self.assertEqual(children(leader), {family.child, family.away})
        self.assertEqual(set(descendants(leader)), {family.child, family.away})
        self.assertEqual(process_tree(leader), {leader, family.child, family.away})
        self.assertEqual(group_members(leader), {leader, family.child})
        self.assertTrue(_eventually(lambda: (cpu_seconds([leader]) or 0) >= 0.1))
        self.assertGreater(rss_megabytes([leader, family.child]) or 0, 1)
        self.assertLessEqual(started(leader) or 0, time.time())

    def test_gone_processes_answer_unknown(self) -> None:
        """A pid that no process holds has no family, no usage and no start time."""
        family = Family(self)
        kill_group(family.process)
        pid = family.process.pid
        self.assertEqual((children(pid), descendants(pid), process_tree(pid)), (set(), [], set()))
        self.assertEqual((cpu_seconds([pid]), rss_megabytes([pid]), started(pid)), (None,) * 3)

    def test_machine_busy_seconds_grow(self) -> None:
        """The machine's busy CPU time is a positive count that does not go back."""
        first = machine_busy_seconds()
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        self.assertGreaterEqual(machine_busy_seconds(), first)
        self.assertGreater(first, 0)


class StopTests(SynchronousTestCase):
    def test_stop_group_stops_the_group_and_the_descendant_that_left_it(self) -> None:
        """SIGTERM stops the leader by itself (True); nothing of the family is left after,
        not even the grandchild in a session of its own."""
        family = Family(self)
        self.assertTrue(stop_group(family.process, grace=10))
        self.assertTrue(_eventually(family.all_gone))
        self.assertTrue(group_gone(family.process.pid))

    def test_stop_group_kills_what_ignores_the_signal_after_the_grace(self) -> None:
        """A leader that ignores SIGTERM is SIGKILLed after the grace period (False)."""
        family = Family(self, IGNORE_TERM="1")
        started_at = time.monotonic()
        self.assertFalse(stop_group(family.process, grace=0.5))
        self.assertGreaterEqual(time.monotonic() - started_at, 0.5)
        self.assertEqual(family.process.returncode, -signal.SIGKILL)
        self.assertTrue(_eventually(family.all_gone))

    def test_kill_group_waits_until_the_group_is_gone(self) -> None:
        """kill_group reaches frozen processes too, and returns once the group is empty."""
        family = Family(self)
        signal_tree(family.process, signal.SIGSTOP)
        self.assertTrue(kill_group(family.process))
        self.assertTrue(group_gone(family.process.pid))
        self.assertEqual(family.process.returncode, -signal.SIGKILL)


class PortTests(SynchronousTestCase):
    def test_a_free_port_is_closed_until_something_listens(self) -> None:
        """A free port accepts no connection; once a socket listens there it does, waiting
        for it returns, and its listener is found by port."""
        port = free_port()
        self.assertFalse(port_open(port))
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))
            listener.listen()
            self.assertTrue(port_open(port))
            self.assertLess(wait_port(port, 5), 5)
            self.assertIn(os.getpid(), listening_pids(port))

    def test_waiting_for_a_port_stops_when_its_process_exits(self) -> None:
        """Waiting for a port that a dead process should have opened raises at once."""
        with self.assertRaises(NotReady):
            wait_port(free_port(), 30, "nothing", alive=lambda: False)

    def test_http_status_of_a_closed_port_is_none(self) -> None:
        """A URL that nothing answers has no status."""
        self.assertIsNone(http_status(f"http://127.0.0.1:{free_port()}/health", timeout=0.5))
