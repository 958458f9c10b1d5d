"""Several processes serving one listening port (``--workers N``).

The parent (the ``twistd squad`` process) binds the port and starts N workers, each a separate
Python process with its own reactor and its own database pool. Each worker gets a listening
socket of its own, all bound to the same port with ``SO_REUSEPORT``, so the kernel spreads new
connections evenly over the workers (by a hash of the client's address and port).

Not one socket shared by all workers: the kernel then gives a burst of connections to
whichever worker accepts first, and Twisted accepts many per wake-up, so one worker can end
up with all of them (docs/performance.md, "Connection balance", has the measurements).

The parent keeps every socket open: while a dead worker is being replaced, the connections
the kernel gives its socket wait in that socket's backlog for the replacement instead of being
refused. The parent restarts a worker that dies (its pending work is taken over through the
database) and, on SIGTERM or SIGINT, asks every worker to stop gracefully, killing any that has
not exited after ``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from squad.runtime.logs import SettingsLog
from squad.runtime.metrics import MULTIPROC_ENV, count_worker_restart, forget_process
from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings

__all__ = [
    "STOP_GRACE",
    "WorkerSupervisor",
    "bind_listening_socket",
    "bind_listening_sockets",
    "supervisor_service",
]

log = Logger()

# A worker gets this long to finish in-flight requests and hand back its work after SIGTERM.
STOP_GRACE = 8.0
# A worker that keeps dying is restarted at most this often.
RESTART_DELAY = 0.5


def _parse_tcp(port: str) -> tuple[int, int, str, int]:
    """(family, number, interface, backlog) of a ``tcp:PORT[:interface=...][:backlog=...]``
    endpoint."""
    parts = port.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        raise ValueError(f"--workers above 1 needs a tcp: endpoint, not {port!r}")
    number = int(parts[1])
    options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    # Twisted's own default; a backslash escapes a colon in an endpoint string.
    interface = options.get("interface", "0.0.0.0").replace("\\", "")  # noqa: S104
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    return family, number, interface, int(options.get("backlog", 4096))


def _listen(
    family: int, interface: str, number: int, backlog: int, *, shared: bool
) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((interface, number))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


def bind_listening_socket(port: str) -> socket.socket:
    """Bind and listen on the ``tcp:`` endpoint ``port`` alone (no ``SO_REUSEPORT``): fails
    when anything already listens there."""
    family, number, interface, backlog = _parse_tcp(port)
    return _listen(family, interface, number, backlog, shared=False)


def bind_listening_sockets(port: str, count: int) -> list[socket.socket]:
    """``count`` listening sockets on the ``tcp:`` endpoint ``port``, one per worker, sharing
    it with ``SO_REUSEPORT``; port 0 picks one free port for all of them."""
    # A plain bind first, so a port held by anything else, another squad's SO_REUSEPORT
    # group included, is refused instead of silently shared with it.
    with bind_listening_socket(port) as probe:
        number = probe.getsockname()[1]
    family, _, interface, backlog = _parse_tcp(port)
    listeners: list[socket.socket] = []
    try:
        for _ in range(count):
            listeners.append(_listen(family, interface, number, backlog, shared=True))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.pid: int | None = None

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)


class WorkerSupervisor(Service):
    """Starts, watches and stops the worker processes."""

    def __init__(self, reactor: Any, settings: Settings) -> None:
        self._reactor: IReactorProcess = reactor
        self._clock: IReactorTime = reactor
        self._settings = settings
        self.count = settings.workers
        self.listeners: list[socket.socket] = []
        # The workers' shared metrics folder (prometheus_client's multiprocess mode).
        self.metrics_directory: str | None = None
        self.workers: dict[int, _WorkerProtocol] = {}
        self.restarts = 0

    def startService(self) -> None:
        super().startService()
        if not self.listeners:
            self.listeners = bind_listening_sockets(self._settings.port, self.count)
        self.metrics_directory = tempfile.mkdtemp(prefix="squad-metrics-")
        host, port = self.listeners[0].getsockname()[:2]
        log.info(
            "squad listening on {host}:{port} with {count} worker processes",
            host=host,
            port=port,
            count=self.count,
        )
        for index in range(self.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        fd = self.listeners[index].fileno()
        protocol = _WorkerProtocol(self, index)
        environment = dict(os.environ)
        environment[WORKER_SETTINGS_ENV] = self._settings.to_json()
        if self.metrics_directory is not None:
            environment[MULTIPROC_ENV] = self.metrics_directory
        process = self._reactor.spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, "-m", "squad.runtime.worker_entry", str(fd)],
            env=environment,
            childFDs={0: "w", 1: 1, 2: 2, fd: fd},
        )
        protocol.pid = process.pid
        self.workers[index] = protocol

    def worker_ended(self, protocol: _WorkerProtocol, reason: Failure) -> None:
        if self.workers.get(protocol.index) is not protocol:
            return
        del self.workers[protocol.index]
        if protocol.pid is not None and self.metrics_directory is not None:
            forget_process(protocol.pid, self.metrics_directory)
        if not self.running:
            return
        self.restarts += 1
        count_worker_restart(self.metrics_directory)
        log.warn(
            "Worker {index} ended ({reason}); starting a new one.",
            index=protocol.index,
            reason=reason.getErrorMessage(),
        )
        self._clock.callLater(RESTART_DELAY, self._respawn, protocol.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self.workers:
            self._spawn(index)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        workers = list(self.workers.values())
        for worker in workers:
            _signal(worker, signal.SIGTERM)

        def kill_stragglers() -> None:
            for worker in workers:
                if not worker.ended.called:
                    _signal(worker, signal.SIGKILL)

        straggler_call = self._clock.callLater(STOP_GRACE, kill_stragglers)
        all_ended = defer.gatherResults([worker.ended for worker in workers])

        def done(_: object) -> None:
            if straggler_call.active():
                straggler_call.cancel()
            for listener in self.listeners:
                listener.close()
            self.listeners = []
            if self.metrics_directory is not None:
                shutil.rmtree(self.metrics_directory, ignore_errors=True)
                self.metrics_directory = None

        return all_ended.addCallback(done)


def _signal(worker: _WorkerProtocol, number: int) -> None:
    transport = worker.transport
    if transport is None:
        return
    with contextlib.suppress(Exception):  # the process already exited
        transport.signalProcess(number)


def supervisor_service(settings: Settings, reactor: Any) -> MultiService:
    """The parent's service tree for ``--workers`` above 1: its start-up line, then the
    supervisor of the worker processes."""
    root = MultiService()
    root.setName("squad")
    SettingsLog(settings, "supervisor").setServiceParent(root)
    WorkerSupervisor(reactor, settings).setServiceParent(root)
    return root
