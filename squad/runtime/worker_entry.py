"""The entry point of one worker process: ``python -m squad.runtime.worker_entry FD``.

Started by ``squad.runtime.supervisor.WorkerSupervisor``, with its settings as JSON in
``SQUAD_WORKER_SETTINGS``; serves HTTP on the inherited listening socket FD with its own
reactor and database pool. SIGTERM stops it gracefully: stop accepting, let
in-flight requests finish, hand pending work back to the pool, exit.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred


def main(argv: list[str]) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from squad.runtime.gc_tuning import tune_collector
    from squad.runtime.logs import observer_from_environment
    from squad.runtime.service_tree import build_process_service
    from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings

    fd = int(argv[1])
    settings = Settings.from_json(os.environ[WORKER_SETTINGS_ENV], os.environ)

    globalLogBeginner.beginLoggingTo([observer_from_environment()], redirectStandardIO=False)
    listener = socket.socket(fileno=fd)
    family = listener.family
    listener.detach()
    service = build_process_service(settings, reactor, adopt=(fd, family), role="worker")
    service.startService()

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

    reactor.callWhenRunning(handle_signals)
    reactor.callWhenRunning(tune_collector)
    reactor.run()


async def _stop(service: object) -> None:
    stopping = service.stopService()  # type: ignore[attr-defined]
    if stopping is not None:
        await stopping


if __name__ == "__main__":
    main(sys.argv)
