"""Several processes serving one listening port (``--workers N``).

The parent (the ``twistd squad`` process) binds the port once and starts N workers, each a
separate Python process with its own reactor and its own database pool, which adopt the
listening socket (``adoptStreamPort``): the kernel hands each new connection to whichever
worker accepts first. That balances connections opened over time, not a burst: Twisted accepts
many per wake-up, and ``./bin/benchmark 25`` (25 connections opened at once) was seen landing
24/1, 25/0 and 10/15 on two workers in successive runs, with requests/s within the run-to-run
noise either way (the two cores were saturated with the database and the load generator on
them; accepting one connection per wake-up did not make the split even). The parent restarts a
worker that dies (its pending work is taken over through the database) and, on SIGTERM or
SIGINT, asks every worker to stop gracefully, killing any that has not exited after
``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from squad.metrics import forget_process

__all__ = ["STOP_GRACE", "WorkerSupervisor", "bind_listening_socket", "worker_config"]

log = Logger()

# A worker gets this long to finish in-flight requests and hand back its work after SIGTERM.
STOP_GRACE = 8.0
# A worker that keeps dying is restarted at most this often.
RESTART_DELAY = 0.5

# Options a worker needs, passed as JSON (the seal key travels by file or environment only).
WORKER_OPTIONS = (
    "mongo-uri",
    "database",
    "slow-min",
    "slow-max",
    "verifier-url",
    "allow-flush",
    "lease-seconds",
    "write-concern",
    "instance-name",
    "max-connections",
    "request-timeout",
    "seal-key-file",
)


def worker_config(config: Any, index: int) -> str:
    return json.dumps({"index": index, **{name: config[name] for name in WORKER_OPTIONS}})


def bind_listening_socket(port: str) -> socket.socket:
    """Bind the ``tcp:PORT[:interface=...][:backlog=...]`` endpoint the workers will share."""
    parts = port.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        raise ValueError(f"--workers above 1 needs a tcp: endpoint, not {port!r}")
    number = int(parts[1])
    options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
    interface = options.get("interface", "0.0.0.0")  # noqa: S104 - Twisted's own default
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((interface.replace("\\", ""), number))
    listener.listen(int(options.get("backlog", 4096)))
    listener.setblocking(False)
    return listener


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

    def __init__(self, reactor: Any, config: Any, count: int) -> None:
        self._reactor: IReactorProcess = reactor
        self._clock: IReactorTime = reactor
        self._config = config
        self.count = count
        self.listener: socket.socket | None = None
        self.workers: dict[int, _WorkerProtocol] = {}
        self.restarts = 0

    def startService(self) -> None:
        super().startService()
        if self.listener is None:
            self.listener = bind_listening_socket(self._config["port"])
        host, port = self.listener.getsockname()[:2]
        log.info(
            "squad listening on {host}:{port} with {count} worker processes",
            host=host,
            port=port,
            count=self.count,
        )
        for index in range(self.count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        assert self.listener is not None
        fd = self.listener.fileno()
        protocol = _WorkerProtocol(self, index)
        environment = dict(os.environ)
        environment["SQUAD_WORKER_CONFIG"] = worker_config(self._config, index)
        process = self._reactor.spawnProcess(
            protocol,
            sys.executable,
            [sys.executable, "-m", "squad.worker", str(fd)],
            env=environment,
            childFDs={0: "w", 1: 1, 2: 2, fd: fd},
        )
        protocol.pid = process.pid
        self.workers[index] = protocol

    def worker_ended(self, protocol: _WorkerProtocol, reason: Failure) -> None:
        if self.workers.get(protocol.index) is not protocol:
            return
        del self.workers[protocol.index]
        if protocol.pid is not None:
            forget_process(protocol.pid)
        if not self.running:
            return
        self.restarts += 1
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
            if self.listener is not None:
                self.listener.close()
                self.listener = None

        return all_ended.addCallback(done)


def _signal(worker: _WorkerProtocol, number: int) -> None:
    transport = worker.transport
    if transport is None:
        return
    with contextlib.suppress(Exception):  # the process already exited
        transport.signalProcess(number)
