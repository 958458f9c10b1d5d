"""The parent process: worker processes serving one listening port, restarted, reloaded, stopped.

The parent (the ``twistd squad`` process) binds the port and starts ``--workers`` workers, each
a separate Python process with its own reactor and its own database pool. Each worker gets a
listening socket of its own, all bound to the same port with ``SO_REUSEPORT``, so the kernel
spreads new connections evenly over the workers (by a hash of the client's address and port).

Not one socket shared by all workers: the kernel then gives a burst of connections to
whichever worker accepts first, and Twisted accepts many per wake-up, so one worker can end
up with all of them (docs/performance.md, "Connection balance", has the measurements).

The parent keeps every socket open: while a dead worker is being replaced, the connections
the kernel gives its socket wait in that socket's backlog for the replacement instead of being
refused. The parent restarts a worker that dies (its pending work is taken over through the
database) and, on SIGTERM or SIGINT, asks every worker to stop gracefully, killing any that has
not exited after ``STOP_GRACE`` seconds.

SIGHUP reloads: each worker in turn gets a replacement, a new process that runs the code on
disk now, on the same socket as the worker it replaces (so the two accept from one backlog
and no connection waits on a socket that closes). Only once the replacement says it serves is
the old worker stopped gracefully, as on SIGTERM; the next worker's replacement starts while
it finishes. A replacement that cannot start stops the reload; the workers not yet replaced
keep serving.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from squad.metrics import MULTIPROC_ENV, count_worker_restart, retire_process
from squad.runtime.logs import SettingsLog
from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings

__all__ = [
    "READY_TIMEOUT",
    "RELOAD_STOP_GRACE",
    "STOP_GRACE",
    "HangupReloads",
    "WorkerSupervisor",
    "bind_listening_socket",
    "bind_listening_sockets",
    "supervisor_service",
]

log = Logger()

# A worker gets this long to finish in-flight requests and hand back its work after SIGTERM.
STOP_GRACE = 8.0
# A worker replaced by a reload gets longer: its replacement already serves, and a kill
# before its hand-over would leave its work waiting a whole lease.
RELOAD_STOP_GRACE = 20.0
# A worker that keeps dying is restarted at most this often.
RESTART_DELAY = 0.5
# A replacement that has not said it serves by then stops the reload.
READY_TIMEOUT = 30.0

#: The worker's descriptors: its listening socket, and the pipe it says "ready" on.
LISTEN_FD = 3
READY_FD = 4

WORKER_COMMAND = (sys.executable, "-m", "squad.runtime.worker_entry")


def _parse_tcp(port: str) -> tuple[int, int, str, int]:
    """(family, number, interface, backlog) of a ``tcp:PORT[:interface=...][:backlog=...]``
    endpoint."""
    parts = port.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        raise ValueError(f"worker processes need a tcp: endpoint, not {port!r}")
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


class WorkerFailed(Exception):
    """A worker ended, or said it could not start, before it served; the message says why."""


def _how_it_ended(reason: Failure) -> str:
    ended = reason.value
    if isinstance(ended, ProcessTerminated):
        if ended.signal is not None:
            return f"killed by signal {ended.signal}"
        return f"exit status {ended.exitCode}"
    return "exit status 0"


class _WorkerProtocol(ProcessProtocol):
    """One worker process: its pid, whether it said it serves, and its end."""

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.pid: int | None = None
        self.is_ready = False
        self.has_ended = False
        # The worker's own sentence when it could not start (an import error, a bad setting).
        self.failure: str | None = None
        self._heard = b""
        self._ready_waiters: list[Deferred[None]] = []
        self._end_waiters: list[Deferred[None]] = []

    def when_ready(self) -> Deferred[None]:
        """Fires once the worker serves; fails with ``WorkerFailed`` if it ends first."""
        waiter: Deferred[None] = Deferred()
        if self.is_ready:
            waiter.callback(None)
        elif self.has_ended:
            waiter.errback(WorkerFailed(self.failure or "it had already ended"))
        else:
            self._ready_waiters.append(waiter)
        return waiter

    def when_ended(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if self.has_ended:
            waiter.callback(None)
        else:
            self._end_waiters.append(waiter)
        return waiter

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != READY_FD:
            return
        self._heard += data
        while b"\n" in self._heard:
            line, self._heard = self._heard.split(b"\n", 1)
            if line == b"ready" and not self.is_ready:
                self.is_ready = True
                waiters, self._ready_waiters = self._ready_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            elif line.startswith(b"failed "):
                self.failure = line[len(b"failed ") :].decode("utf-8", "replace")

    def processEnded(self, reason: Failure) -> None:
        self.has_ended = True
        if not self.is_ready:
            why = self.failure or f"it ended ({_how_it_ended(reason)}) before serving"
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.errback(WorkerFailed(why))
        ended, self._end_waiters = self._end_waiters, []
        for waiter in ended:
            waiter.callback(None)
        self.supervisor.worker_ended(self, reason)


class WorkerSupervisor(Service):
    """Starts, watches, reloads and stops the worker processes.

    ``command`` is what starts one worker (the listening and ready descriptors are appended);
    tests pass another one.
    """

    def __init__(
        self, reactor: Any, settings: Settings, command: Sequence[str] = WORKER_COMMAND
    ) -> None:
        self._reactor: IReactorProcess = reactor
        self._clock: IReactorTime = reactor
        self._settings = settings
        self.command = list(command)
        self.count = settings.workers
        self.listeners: list[socket.socket] = []
        # The workers' shared metrics folder (prometheus_client's multiprocess mode).
        self.metrics_directory: str | None = None
        #: The worker serving each socket (by index); a replacement joins once it serves.
        self.workers: dict[int, _WorkerProtocol] = {}
        # Every worker process not yet ended: the current ones, replacements, old ones stopping.
        self._live: set[_WorkerProtocol] = set()
        self.restarts = 0
        self.reloads = 0
        self._reloading: Deferred[None] | None = None
        self._reload_again = False

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
            self.workers[index] = self._spawn(index)

    def _spawn(self, index: int) -> _WorkerProtocol:
        protocol = _WorkerProtocol(self, index)
        environment = dict(os.environ)
        environment[WORKER_SETTINGS_ENV] = self._settings.to_json()
        if self.metrics_directory is not None:
            environment[MULTIPROC_ENV] = self.metrics_directory
        process = self._reactor.spawnProcess(
            protocol,
            self.command[0],
            [*self.command, str(LISTEN_FD), str(READY_FD)],
            env=environment,
            childFDs={0: "w", 1: 1, 2: 2, LISTEN_FD: self.listeners[index].fileno(), READY_FD: "r"},
        )
        protocol.pid = process.pid
        self._live.add(protocol)
        return protocol

    def worker_ended(self, protocol: _WorkerProtocol, reason: Failure) -> None:
        self._live.discard(protocol)
        if protocol.pid is not None and self.metrics_directory is not None:
            try:
                retire_process(protocol.pid, self.metrics_directory)
            except OSError as error:
                log.warn(
                    "Could not fold the metrics of ended worker {pid} into the archive: {error}",
                    pid=protocol.pid,
                    error=error,
                )
        if self.workers.get(protocol.index) is not protocol:
            return  # replaced by a reload, or a replacement that never served
        del self.workers[protocol.index]
        if not self.running:
            return
        self.restarts += 1
        count_worker_restart(self.metrics_directory)
        log.warn(
            "Worker {index} ended ({reason}); starting a new one.",
            index=protocol.index,
            reason=_how_it_ended(reason),
        )
        self._clock.callLater(RESTART_DELAY, self._respawn, protocol.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self.workers:
            self.workers[index] = self._spawn(index)

    # -- reload -------------------------------------------------------------------------------

    def reload(self) -> None:
        """Replace every worker, one at a time, by one running the code on disk now (SIGHUP).

        A reload asked for during another is queued (one at most), since its new code may be
        newer than what the running reload started.
        """
        if not self.running:
            log.info("Reload ignored: squad is stopping.")
            return
        if self._reloading is not None:
            if self._reload_again:
                log.info("Reload asked again during a reload: one is already queued after it.")
            else:
                self._reload_again = True
                log.info("Reload asked during a reload: another one starts when this one ends.")
            return
        self._reloading = ensureDeferred(self._reload())
        self._reloading.addBoth(self._reloaded)

    def _reloaded(self, result: object) -> None:
        self._reloading = None
        if isinstance(result, Failure):
            log.failure("The reload failed", result)
        if self._reload_again and self.running:
            self._reload_again = False
            self.reload()

    async def _reload(self) -> None:
        started = self._clock.seconds()
        log.info("Reload started: replacing {count} workers one at a time.", count=self.count)
        # A replaced worker has stopped listening: the next replacement starts while it
        # finishes its answers and hands its work over.
        stopping: list[Deferred[None]] = []
        try:
            for index in range(self.count):
                if not self.running:
                    log.info("Reload stopped: squad is stopping.")
                    return
                replacement = self._spawn(index)
                try:
                    await self._until_ready(replacement)
                except WorkerFailed as failure:
                    if not self.running:
                        log.info("Reload stopped: squad is stopping.")
                        return
                    log.error(
                        "Reload stopped after {seconds:.1f} s: the new worker {index} could"
                        " not start ({reason}); {kept} of {count} workers keep serving the code"
                        " they started with.",
                        seconds=self._clock.seconds() - started,
                        index=index,
                        reason=failure,
                        kept=self.count - index,
                        count=self.count,
                    )
                    stopping.append(ensureDeferred(self._stop_worker(replacement)))
                    return
                previous = self.workers.get(index)
                self.workers[index] = replacement
                if previous is not None:
                    stopping.append(ensureDeferred(self._stop_worker(previous, RELOAD_STOP_GRACE)))
        finally:
            await defer.gatherResults(stopping)
        self.reloads += 1
        log.info(
            "Reload done: {count} workers replaced in {seconds:.1f} s.",
            count=self.count,
            seconds=self._clock.seconds() - started,
        )

    async def _until_ready(self, worker: _WorkerProtocol) -> None:
        ready = worker.when_ready()
        ready.addTimeout(READY_TIMEOUT, self._clock)
        try:
            await ready
        except defer.TimeoutError:
            raise WorkerFailed(f"it did not serve within {READY_TIMEOUT:g} s") from None

    async def _stop_worker(self, worker: _WorkerProtocol, grace: float = STOP_GRACE) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it still runs after ``grace``."""
        ended = worker.when_ended()
        _signal(worker, signal.SIGTERM)
        straggler = self._clock.callLater(grace, _signal, worker, signal.SIGKILL)
        try:
            await ended
        finally:
            if straggler.active():
                straggler.cancel()

    # -- stop ---------------------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._reload_again = False
        return ensureDeferred(self._stop_all())

    async def _stop_all(self) -> None:
        await defer.gatherResults(
            [ensureDeferred(self._stop_worker(worker)) for worker in list(self._live)]
        )
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        if self.metrics_directory is not None:
            shutil.rmtree(self.metrics_directory, ignore_errors=True)
            self.metrics_directory = None


def _signal(worker: _WorkerProtocol, number: int) -> None:
    transport = worker.transport
    if transport is None or worker.has_ended:
        return
    with contextlib.suppress(Exception):  # the process already exited
        transport.signalProcess(number)


class HangupReloads(Service):
    """Calls ``reload`` on SIGHUP (twistd leaves SIGHUP alone, and its default ends the
    process). ``install`` is ``signal.signal``; tests pass a fake."""

    def __init__(
        self,
        reactor: Any,
        reload: Callable[[], None],
        install: Callable[[int, Any], Any] = signal.signal,
    ) -> None:
        self._reactor = reactor
        #: What SIGHUP calls.
        self.reload = reload
        self._install = install

    def startService(self) -> None:
        super().startService()
        self._install(signal.SIGHUP, self._received)

    def _received(self, number: int, frame: object) -> None:
        # A signal handler runs between two bytecodes of whatever the reactor was doing.
        self._reactor.callFromThread(self.reload)


def supervisor_service(settings: Settings, reactor: Any) -> MultiService:
    """The parent's service tree: its start-up line, the supervisor of the worker processes,
    and SIGHUP reloading them."""
    root = MultiService()
    root.setName("squad")
    SettingsLog(settings, "supervisor").setServiceParent(root)
    supervisor = WorkerSupervisor(reactor, settings)
    supervisor.setServiceParent(root)
    HangupReloads(reactor, supervisor.reload).setServiceParent(root)
    return root
