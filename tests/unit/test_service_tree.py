"""The service trees: what a process runs, in which order it starts and stops, and how the
supervisor starts, restarts and stops its workers (on a fake process reactor, no processes)."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squad.background.hashing import PasswordHasher
from squad.background.slow_step import SlowWork
from squad.background.takeover import ProcessLease
from squad.runtime.logs import SettingsLog
from squad.runtime.metrics import MULTIPROC_ENV
from squad.runtime.service_tree import (
    DrainService,
    SequentialMultiService,
    VerifierConnections,
    build_process_service,
)
from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings
from squad.runtime.supervisor import RESTART_DELAY, STOP_GRACE, WorkerSupervisor
from squad.runtime.supervisor import supervisor_service as build_supervisor_service
from squad.storage.database import DatabaseService
from tests.options import KEY, parse


def settings(*argv: str) -> Settings:
    return parse(["--port", "tcp:0:interface=127.0.0.1", *argv]).settings


class Recorded(Service):
    """A child that notes its start and stop in ``log`` and stops when the test says so."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.setName(name)
        self._log = log
        self.stopping: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._log.append(f"start {self.name}")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._log.append(f"stop {self.name}")
        self.stopping = Deferred()
        return self.stopping


class SequentialStopTests(SynchronousTestCase):
    """``SequentialMultiService``: start in order, stop in reverse, one child at a time."""

    def setUp(self) -> None:
        self.log: list[str] = []
        self.root = SequentialMultiService()
        self.children = [Recorded(name, self.log) for name in ("database", "work", "http")]
        for child in self.children:
            child.setServiceParent(self.root)

    def test_starts_in_order_and_stops_in_reverse_one_after_another(self) -> None:
        """Each child stops only once the one started after it has finished stopping."""
        self.root.startService()
        self.assertEqual(self.log, ["start database", "start work", "start http"])
        stopped = self.root.stopService()
        self.assertEqual(self.log[3:], ["stop http"])
        database, work, http = self.children
        assert http.stopping is not None
        http.stopping.callback(None)
        self.assertEqual(self.log[3:], ["stop http", "stop work"])
        assert work.stopping is not None
        work.stopping.callback(None)
        self.assertEqual(self.log[3:], ["stop http", "stop work", "stop database"])
        self.assertNoResult(stopped)
        assert database.stopping is not None
        database.stopping.callback(None)
        self.successResultOf(stopped)

    def test_a_child_that_fails_to_stop_does_not_keep_the_others_running(self) -> None:
        """A failed stop is logged and the next child still stops."""
        self.root.startService()
        stopped = self.root.stopService()
        _, work, http = self.children
        assert http.stopping is not None
        http.stopping.errback(Failure(RuntimeError("the port would not close")))
        self.assertEqual(self.log[-1], "stop work")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        assert work.stopping is not None
        work.stopping.callback(None)
        assert self.children[0].stopping is not None
        self.children[0].stopping.callback(None)
        self.successResultOf(stopped)


class ProcessTreeTests(SynchronousTestCase):
    """``build_process_service``: the children of one process, in start order (the stop order
    is the reverse: the site closes first, the database last)."""

    def kinds(self, root: MultiService) -> list[type]:
        return [type(child) for child in root]

    def test_children_in_start_order(self) -> None:
        """Log line, database, lease, slow work, hasher, drain, sampler, then HTTP: work is
        handed back before the pool closes, and answers finish before the work stops."""
        root = build_process_service(settings(), MemoryReactorClock())
        self.assertEqual(
            self.kinds(root),
            [
                SettingsLog,
                DatabaseService,
                ProcessLease,
                SlowWork,
                PasswordHasher,
                DrainService,
                TimerService,
                StreamServerEndpointService,
            ],
        )
        self.assertIs(root.getServiceNamed("http"), list(root)[-1])

    def test_a_verifier_url_adds_its_connection_pool_before_the_work(self) -> None:
        """With --verifier-url, the HTTP pool to the verifier starts before the slow work and
        closes after it."""
        root = build_process_service(
            settings("--verifier-url", "http://127.0.0.1:1/verify"), MemoryReactorClock()
        )
        kinds = self.kinds(root)
        self.assertLess(kinds.index(VerifierConnections), kinds.index(SlowWork))
        self.assertLess(kinds.index(DatabaseService), kinds.index(VerifierConnections))


class Transport:
    """What ``spawnProcess`` returns here: a pid, and the signals sent to it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, number: int) -> None:
        self.signals.append(number)


class ProcessReactor(MemoryReactorClock):
    """A memory reactor that records ``spawnProcess`` instead of starting anything."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[str, str], Transport]] = []

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: dict[str, str], **_: Any
    ) -> Transport:
        transport = Transport(1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append((protocol, args, env, transport))
        return transport


class SupervisorTests(SynchronousTestCase):
    """``WorkerSupervisor``: one worker per --workers, each told its settings as data."""

    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.settings = settings("--workers", "2")
        self.supervisor = WorkerSupervisor(self.reactor, self.settings)

    def end(self, index: int) -> None:
        from twisted.internet.error import ProcessTerminated

        protocol = self.reactor.spawned[index][0]
        protocol.processEnded(Failure(ProcessTerminated(signal=signal.SIGKILL)))

    def stop_everything(self) -> None:
        """Stop the supervisor and let every worker it still has exit (closing the sockets)."""
        stopped = self.supervisor.stopService()
        for protocol, *_ in self.reactor.spawned:
            if not protocol.ended.called:
                protocol.processEnded(Failure(RuntimeError("stopped by the test")))
        self.successResultOf(stopped)

    def test_the_parent_tree_is_a_log_line_and_the_supervisor(self) -> None:
        """For --workers above 1 the parent runs only its log line and the supervisor."""
        root = build_supervisor_service(self.settings, self.reactor)
        self.assertEqual([type(child) for child in root], [SettingsLog, WorkerSupervisor])
        self.assertTrue(IService.providedBy(root))

    def test_each_worker_gets_the_settings_and_the_metrics_folder(self) -> None:
        """Each worker is ``python -m squad.runtime.worker_entry FD`` with the settings as
        JSON (no seal key) and the shared metrics folder in its environment."""
        self.supervisor.startService()
        self.addCleanup(self.stop_everything)
        self.assertEqual(len(self.reactor.spawned), 2)
        for _, args, env, _ in self.reactor.spawned:
            self.assertEqual(args[1:3], ["-m", "squad.runtime.worker_entry"])
            self.assertEqual(Settings.from_json(env[WORKER_SETTINGS_ENV], env), self.settings)
            self.assertNotIn(KEY, env[WORKER_SETTINGS_ENV])
            self.assertEqual(env[MULTIPROC_ENV], self.supervisor.metrics_directory)
        self.assertNotIn(WORKER_SETTINGS_ENV, os.environ)
        self.assertEqual(json.loads(env[WORKER_SETTINGS_ENV])["workers"], 2)

    def test_a_worker_that_dies_is_replaced(self) -> None:
        """A worker that ends while the service runs is started again after a short delay."""
        self.supervisor.startService()
        self.addCleanup(self.stop_everything)
        self.end(0)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.supervisor.restarts, 1)

    def test_stop_asks_each_worker_then_kills_stragglers(self) -> None:
        """Stop sends SIGTERM to every worker, SIGKILL to any still running after the grace
        period, and ends once all have exited, removing the metrics folder."""
        self.supervisor.startService()
        folder = self.supervisor.metrics_directory
        assert folder is not None
        stopped = self.supervisor.stopService()
        transports = [spawned[3] for spawned in self.reactor.spawned]
        self.assertEqual([t.signals for t in transports], [[signal.SIGTERM]] * 2)
        self.end(0)
        self.reactor.advance(STOP_GRACE)
        self.assertEqual(transports[1].signals, [signal.SIGTERM, signal.SIGKILL])
        self.assertNoResult(stopped)
        self.end(1)
        self.successResultOf(stopped)
        self.assertFalse(os.path.exists(folder))
        self.assertEqual(len(self.reactor.spawned), 2)
