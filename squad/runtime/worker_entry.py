"""The entry point of one worker process: ``python -m squad.runtime.worker_entry FD [READY_FD]``.

Started by ``squad.runtime.supervisor.WorkerSupervisor``, with its settings as JSON in
``SQUAD_WORKER_SETTINGS``; serves HTTP on the inherited listening socket FD with its own
reactor and database pool. Once it serves, it writes ``ready`` on READY_FD; when it cannot
start (an import error, a bad setting) it writes ``failed <reason>`` there instead and exits
1, so that a reload stops with that reason. SIGTERM stops it gracefully: stop accepting, let
in-flight requests finish, hand pending work back to the pool, exit. So does the end of its
stdin, a pipe the supervisor holds open: a supervisor killed outright (SIGKILL, the OOM killer)
takes no worker with it otherwise, and a worker left behind would keep serving its old code on
the shared port beside the next service's workers.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import traceback
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


def _tell(ready_fd: int | None, line: str) -> None:
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, line.encode("utf-8", "replace") + b"\n")
        os.close(ready_fd)
    except OSError:
        pass  # the parent is gone; nothing to tell


@implementer(IReadDescriptor)
class _SupervisorWatch:
    """Calls ``gone`` once the supervisor's end of the pipe on ``fd`` closes: it exited, or was
    killed. The supervisor never writes on it; whatever arrives is read and dropped."""

    def __init__(self, reactor: Any, fd: int, gone: Callable[[], None]) -> None:
        self._reactor = reactor
        self._fd = fd
        self._gone = gone
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "supervisor-watch"

    def doRead(self) -> Failure | None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._reactor.removeReader(self)
            self._gone()
        return None

    def connectionLost(self, reason: Failure) -> None:
        self._gone()  # the reactor dropped the watch: treat it as the supervisor gone


def main(argv: list[str]) -> None:
    # The parent decides when workers stop and reload: Ctrl-C and a terminal's hang-up reach
    # the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fd = int(argv[1])
    ready_fd = int(argv[2]) if len(argv) > 2 else None
    # Only a pipe is the supervisor's: a worker started by hand keeps its terminal or /dev/null.
    watch_supervisor = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    try:
        reactor, service = _build(fd)
    except Exception as error:
        traceback.print_exc()
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        _tell(ready_fd, f"failed {reason}")
        raise SystemExit(1) from None

    def stop() -> Deferred[None]:
        return ensureDeferred(_stop(service))

    reactor.addSystemEventTrigger("before", "shutdown", stop)

    def handle_signals() -> None:
        # The parent decides when workers stop: Ctrl-C reaches the whole process group, and the
        # supervisor then sends SIGTERM; a second stop must not crash a stopping reactor.
        stopping: list[bool] = []
        running: Any = reactor

        def stop_once(number: int, frame: object) -> None:
            if not stopping:
                stopping.append(True)
                running.callFromThread(running.stop)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, stop_once)
        if watch_supervisor:

            def supervisor_gone() -> None:
                Logger().warn("The supervisor is gone: this worker stops and hands its work back.")
                stop_once(signal.SIGTERM, None)

            running.addReader(_SupervisorWatch(running, sys.stdin.fileno(), supervisor_gone))

    from squad.runtime.gc_tuning import tune_collector

    reactor.callWhenRunning(handle_signals)
    reactor.callWhenRunning(tune_collector)
    # After the service tree started: the socket is adopted and accepts as soon as it runs.
    reactor.callWhenRunning(_tell, ready_fd, "ready")
    reactor.run()


def _build(fd: int) -> tuple[Any, Any]:
    """Import, read the settings and start the service tree (everything that can fail for a
    reason worth one line to the parent)."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from squad.runtime.logs import observer_from_environment
    from squad.runtime.service_tree import build_process_service
    from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings

    settings = Settings.from_json(os.environ[WORKER_SETTINGS_ENV], os.environ)
    globalLogBeginner.beginLoggingTo([observer_from_environment()], redirectStandardIO=False)
    listener = socket.socket(fileno=fd)
    family = listener.family
    listener.detach()
    service = build_process_service(settings, reactor, adopt=(fd, family), role="worker")
    service.startService()
    return reactor, service


async def _stop(service: object) -> None:
    stopping = service.stopService()  # type: ignore[attr-defined]
    if stopping is not None:
        await stopping


if __name__ == "__main__":
    main(sys.argv)
