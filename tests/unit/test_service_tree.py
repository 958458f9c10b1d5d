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
from twisted.internet.error import ProcessTerminated
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from zope.interface import provider

from squad.background.hashing import PasswordHasher
from squad.background.slow_step import SlowWork
from squad.background.takeover import ProcessLease
from squad.http.site import SquadSite
from squad.metrics import MULTIPROC_ENV
from squad.runtime.logs import SettingsLog
from squad.runtime.service_tree import (
    DrainService,
    KeepAliveDrain,
    SequentialMultiService,
    VerifierConnections,
    build_process_service,
)
from squad.runtime.settings import WORKER_SETTINGS_ENV, Settings
from squad.runtime.supervisor import (
    LISTEN_FD,
    READY_FD,
    READY_TIMEOUT,
    RELOAD_STOP_GRACE,
    RESTART_DELAY,
    STOP_GRACE,
    HangupReloads,
    WorkerSupervisor,
)
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
        """Log line, database, lease, slow work, hasher, drain, sampler, keep-alive drain, then
        HTTP: work is handed back before the pool closes, answers finish before the work
        stops, and kept-alive connections close right after the port stops listening."""
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
                KeepAliveDrain,
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
        self.child_fds: list[dict[int, Any]] = []

    def spawnProcess(
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: dict[str, str],
        childFDs: dict[int, Any] | None = None,
        **_: Any,
    ) -> Transport:
        transport = Transport(1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append((protocol, args, env, transport))
        self.child_fds.append(childFDs or {})
        return transport

    def callFromThread(self, f: Any, *args: Any) -> None:
        f(*args)


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
            if not protocol.has_ended:
                protocol.processEnded(Failure(RuntimeError("stopped by the test")))
        self.successResultOf(stopped)

    def test_the_parent_tree_is_a_log_line_and_the_supervisor(self) -> None:
        """The parent runs only its log line, the supervisor, and SIGHUP's handler."""
        root = build_supervisor_service(self.settings, self.reactor)
        self.assertEqual(
            [type(child) for child in root], [SettingsLog, WorkerSupervisor, HangupReloads]
        )
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


class ReloadTests(SynchronousTestCase):
    """``WorkerSupervisor.reload`` (SIGHUP): each worker in turn is replaced by a new process
    on the same socket, and stopped only once that replacement serves."""

    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.supervisor = WorkerSupervisor(self.reactor, settings("--workers", "2"))
        self.logged: list[str] = []

        @provider(ILogObserver)
        def observer(event: Any) -> None:
            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.supervisor.startService()
        self.addCleanup(self.stop_everything)

    def stop_everything(self) -> None:
        if self.supervisor.running:
            stopped = self.supervisor.stopService()
            for index in range(len(self.reactor.spawned)):
                self.end(index)
            self.successResultOf(stopped)

    def protocol(self, index: int) -> Any:
        return self.reactor.spawned[index][0]

    def signals(self, index: int) -> list[int]:
        return self.reactor.spawned[index][3].signals

    def ready(self, index: int) -> None:
        self.protocol(index).childDataReceived(READY_FD, b"ready\n")

    def end(self, index: int, code: int = 0) -> None:
        protocol = self.protocol(index)
        if not protocol.has_ended:
            protocol.processEnded(Failure(ProcessTerminated(exitCode=code)))

    def pids(self) -> list[int | None]:
        """The pid of the current worker of each socket, in socket order."""
        return [self.supervisor.workers[index].pid for index in sorted(self.supervisor.workers)]

    def lines(self, text: str) -> list[str]:
        return [line for line in self.logged if text in line]

    def test_each_worker_is_replaced_once_its_replacement_serves(self) -> None:
        """The replacement of worker 0 gets worker 0's very socket; worker 0 is asked to stop
        (SIGTERM, gracefully) only once its replacement says it serves, and only then does
        worker 1's replacement start. The reload ends once every old worker has exited, and
        the log says when it started and ended, and how long it took."""
        listeners = [listener.fileno() for listener in self.supervisor.listeners]
        self.supervisor.reload()
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.child_fds[2][LISTEN_FD], listeners[0])
        self.assertEqual(self.reactor.child_fds[2][READY_FD], "r")
        self.reactor.advance(2.0)
        self.assertEqual(self.signals(0), [], "stopped before its replacement served")
        self.assertEqual(len(self.reactor.spawned), 3, "two workers replaced at once")
        self.ready(2)
        self.assertEqual(self.signals(0), [signal.SIGTERM])
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(self.reactor.child_fds[3][LISTEN_FD], listeners[1])
        self.assertEqual(self.signals(1), [])
        self.ready(3)
        self.assertEqual(self.signals(1), [signal.SIGTERM])
        self.reactor.advance(1.0)
        self.end(0)
        self.end(1)
        self.assertEqual(self.pids(), [1002, 1003])
        self.assertEqual(self.supervisor.reloads, 1)
        self.assertEqual(self.supervisor.restarts, 0, "a replaced worker was restarted")
        self.reactor.advance(RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(len(self.lines("Reload started")), 1)
        self.assertEqual(self.lines("Reload done"), ["Reload done: 2 workers replaced in 3.0 s."])

    def test_the_reload_ends_once_the_old_workers_exited(self) -> None:
        """Until the last replaced worker has exited, the reload is not done."""
        self.supervisor.reload()
        self.ready(2)
        self.ready(3)
        self.end(1)
        self.assertEqual(self.lines("Reload done"), [])
        self.end(0)
        self.assertEqual(len(self.lines("Reload done")), 1)

    def test_an_old_worker_that_does_not_stop_is_killed_after_the_grace(self) -> None:
        """A replaced worker gets RELOAD_STOP_GRACE, longer than SIGTERM's STOP_GRACE (a kill
        before its hand-over would leave its work waiting a lease), then is killed."""
        self.supervisor.reload()
        self.ready(2)
        self.reactor.advance(STOP_GRACE)
        self.assertEqual(self.signals(0), [signal.SIGTERM])
        self.reactor.advance(RELOAD_STOP_GRACE - STOP_GRACE)
        self.assertEqual(self.signals(0), [signal.SIGTERM, signal.SIGKILL])

    def test_a_replacement_that_cannot_start_stops_the_reload(self) -> None:
        """A replacement that reports why it cannot start (an import error, a bad setting)
        and exits: the old workers are left alone and keep serving, no other replacement
        starts, and one log line gives the reason."""
        self.supervisor.reload()
        self.protocol(2).childDataReceived(
            READY_FD, b"failed ModuleNotFoundError: No module named 'squad.nowhere'\n"
        )
        self.end(2, code=1)
        self.assertEqual((self.signals(0), self.signals(1)), ([], []))
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.pids(), [1000, 1001])
        [line] = self.lines("Reload stopped")
        self.assertIn("No module named 'squad.nowhere'", line)
        self.assertIn("2 of 2 workers keep serving", line)
        self.assertEqual(self.lines("Reload done"), [])
        self.reactor.advance(RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 3, "the failed replacement was restarted")

    def test_a_replacement_that_exits_silently_or_hangs_stops_the_reload(self) -> None:
        """A replacement that exits without a word is named by its exit status; one that never
        says it serves is stopped after READY_TIMEOUT, and the reload stops there too, the
        first replaced worker staying replaced."""
        self.supervisor.reload()
        self.end(2, code=3)
        self.assertIn("exit status 3", self.lines("Reload stopped")[0])
        self.supervisor.reload()
        self.ready(3)
        self.end(0)
        self.reactor.advance(READY_TIMEOUT)
        self.assertEqual(self.signals(4), [signal.SIGTERM])
        self.assertIn(f"did not serve within {READY_TIMEOUT:g} s", self.lines("Reload stopped")[1])
        self.assertIn("1 of 2 workers keep serving", self.lines("Reload stopped")[1])
        self.end(4)
        self.assertEqual(self.pids(), [1003, 1001])

    def test_a_reload_asked_during_a_reload_is_queued_once(self) -> None:
        """SIGHUP during a reload queues one more reload (logged), which starts when the first
        ends; a third is logged and dropped."""
        self.supervisor.reload()
        self.supervisor.reload()
        self.supervisor.reload()
        self.assertEqual(len(self.lines("another one starts when this one ends")), 1)
        self.assertEqual(len(self.lines("one is already queued")), 1)
        for replacement, old in ((2, 0), (3, 1)):
            self.ready(replacement)
            self.end(old)
        self.assertEqual(len(self.lines("Reload started")), 2)
        for replacement, old in ((4, 2), (5, 3)):
            self.ready(replacement)
            self.end(old)
        self.assertEqual(self.supervisor.reloads, 2)
        self.assertEqual(len(self.reactor.spawned), 6)

    def test_sigterm_during_a_reload_stops_every_process(self) -> None:
        """Stopping during a reload asks every process to stop, the replacement included,
        starts nothing more, and ends once all have exited."""
        self.supervisor.reload()
        stopped = self.supervisor.stopService()
        self.assertEqual([self.signals(i) for i in range(3)], [[signal.SIGTERM]] * 3)
        for index in range(3):
            self.end(index, code=1)
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.lines("could not start"), [])

    def test_a_worker_that_dies_during_a_reload_is_still_replaced_once(self) -> None:
        """A worker that crashes while its replacement starts: the replacement takes its place
        (the crash restart finds the place taken), and no process is left unwatched."""
        self.supervisor.reload()
        self.end(0, code=1)
        self.ready(2)
        self.reactor.advance(RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 4)  # worker 1's replacement, nothing else
        self.ready(3)
        self.end(1)
        self.assertEqual(self.pids(), [1002, 1003])


class HangupTests(SynchronousTestCase):
    """``HangupReloads``: SIGHUP calls the reload on the reactor's thread."""

    def test_sighup_reloads(self) -> None:
        """Starting installs a SIGHUP handler; a signal then calls ``reload`` once."""
        installed: dict[int, Any] = {}
        reloads: list[bool] = []
        service = HangupReloads(
            ProcessReactor(), lambda: reloads.append(True), installed.__setitem__
        )
        service.startService()
        installed[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(reloads, [True])


class KeepAliveDrainTests(SynchronousTestCase):
    """``KeepAliveDrain``: a stopping worker's kept-alive connections close between requests."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.site = SquadSite(Resource(), reactor=self.clock)

    def connection(self) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_answers_close_and_idle_connections_close_after_the_grace(self) -> None:
        """Once stopping, an answer says Connection: close and closes its connection; a
        connection with part of a request keeps going; an idle one closes after one second."""
        _, idle = self.connection()
        busy_channel, busy = self.connection()
        partial_channel, partial = self.connection()
        partial_channel.dataReceived(b"GET / HTTP/1.1\r\nHost: squad\r\n")
        stopped = KeepAliveDrain(self.clock, self.site).stopService()
        busy_channel.dataReceived(b"GET / HTTP/1.1\r\nHost: squad\r\n\r\n")
        self.assertIn(b"Connection: close", busy.value())
        self.assertTrue(busy.disconnecting)
        self.clock.pump([0.05] * 10)
        self.assertFalse(idle.disconnecting, "closed while its client may still be sending")
        self.clock.pump([0.05] * 12)
        self.successResultOf(stopped)
        self.assertTrue(idle.disconnecting)
        self.assertFalse(partial.disconnecting, "a request on its way was cut")
        partial_channel.dataReceived(b"\r\n")
        self.assertIn(b"Connection: close", partial.value())
