"""The service tree of one squad process: database, lease, slow work, hasher, HTTP."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from bson import ObjectId
from treq.client import HTTPClient
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from squad.background.finishing import FinishWriter
from squad.background.hashing import HEAVY_SIGNUPS_PER_SECOND, PasswordHasher
from squad.background.resilience import CircuitBreaker
from squad.background.slow_step import SlowWork
from squad.background.takeover import ProcessLease, new_owner_id
from squad.background.verification import HttpVerification, StandInVerification, Verification
from squad.http.routes import SignupActivity, SquadAPI
from squad.http.site import SquadChannel, SquadSite, fit_connection_cap
from squad.metrics import SquadMetrics
from squad.passwords import PasswordSealer
from squad.runtime.logs import SettingsLog
from squad.runtime.settings import Settings
from squad.storage.database import DatabaseService
from squad.storage.failover import retry_once_on_failover
from squad.storage.group_commit import GroupCommit
from squad.storage.store import PendingSignup

__all__ = ["build_process_service", "listen_description"]

log = Logger()

# Database connections per process: FerretDB serves each connection one request at a time, so
# this bounds how many batches and lookups run at once.
POOL_SIZE = 8
# Seconds one call to --verifier-url may take before it counts as failed (and is retried).
VERIFIER_TIMEOUT = 30.0


def listen_description(port: str) -> str:
    """The endpoint with a deep accept queue: the default backlog of 50 drops connections when
    a thousand clients connect at once."""
    if port.startswith("tcp:") and "backlog=" not in port:
        return port + ":backlog=4096"
    return port


def recording_work(
    write: Callable[[list[PendingSignup]], Awaitable[None]],
    slow_work: SlowWork,
    hasher: PasswordHasher,
) -> Callable[[list[PendingSignup]], Coroutine[Any, Any, None]]:
    """``write``, then hand the work documents it wrote to the slow work and the hasher
    (before any answer goes out, so each answered user's work is already held). The hasher
    gets every batch, whoever runs its slow steps: its passwords are this process's."""

    async def write_and_record(batch: list[PendingSignup]) -> None:
        try:
            await write(batch)
        except BaseException:
            # A timeout does not undo a write: what may have landed is looked for later.
            for batch_id, (owner, items) in _work_batches(batch).items():
                slow_work.batch_uncertain(batch_id, owner, len(items))
            raise
        for batch_id, (owner, items) in _work_batches(batch).items():
            stored = [item.user_id for item in items if item.error is None]
            slow_work.batch_stored(batch_id, owner, stored)
            if stored:
                hasher.enqueue(batch_id, len(items))
            else:
                slow_work.writer.sealed_done(batch_id)  # no user of it: nothing to hash

    return write_and_record


def _work_batches(batch: list[PendingSignup]) -> dict[ObjectId, tuple[str, list[PendingSignup]]]:
    """The items of ``batch`` by the work documents (``sealed_passwords``, and ``pending`` for
    overflow) that hold their work."""
    found: dict[ObjectId, tuple[str, list[PendingSignup]]] = {}
    for item in batch:
        if item.work_batch is not None:
            found.setdefault(item.work_batch, (item.owner, []))[1].append(item)
    return found


def timed_write(
    clock: IReactorTime,
    write: Callable[[list[PendingSignup]], Awaitable[None]],
    metrics: SquadMetrics,
) -> Callable[[list[PendingSignup]], Awaitable[None]]:
    async def write_and_measure(batch: list[PendingSignup]) -> None:
        started = clock.seconds()
        try:
            await write(batch)
        except Exception:
            metrics.db_errors.labels("insert_signups").inc()
            raise
        metrics.db_write.observe(clock.seconds() - started)

    return write_and_measure


class MetricsSampler:
    """Queue sizes to gauges, progress counters to counters (off the hot path)."""

    def __init__(self, metrics: SquadMetrics, slow_work: SlowWork, hasher: PasswordHasher) -> None:
        self._metrics = metrics
        self._slow_work = slow_work
        self._hasher = hasher
        self._seen = {"done": 0, "failed": 0, "hashed": 0}

    def sample(self) -> None:
        metrics, work = self._metrics, self._slow_work
        for name, total, counter in (
            ("done", work.completed, metrics.slow_done),
            ("failed", work.failed_attempts, metrics.slow_failed),
            ("hashed", self._hasher.hashed, metrics.hashed),
        ):
            if total > self._seen[name]:
                counter.inc(total - self._seen[name])
            self._seen[name] = total
        metrics.slow_pending.set(work.held)
        metrics.slow_running.set(work.running_steps)
        metrics.oldest_pending.set(work.oldest_age())
        metrics.hash_backlog.set(self._hasher.backlog)
        metrics.hash_oldest.set(self._hasher.oldest_age())
        metrics.finish_backlog.set(work.writer.backlog)


class VerifierConnections(Service):
    """A bounded pool of persistent connections to the verifier, closed when squad stops."""

    def __init__(self, reactor: Any, per_host: int = 32) -> None:
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = per_host
        self.client = HTTPClient(Agent(reactor, pool=self._pool))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        closing: Deferred[None] = self._pool.closeCachedConnections()
        return closing


class SequentialMultiService(MultiService):
    """Stops its children one after the other, last started first.

    ``MultiService`` stops all children at once; squad needs order: stop listening, let answers
    finish, stop background work, hand pending work back, and only then close the database.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception as error:
                log.failure("Stopping {child} failed", child=child, failure=Failure(error))


@implementer(IStreamServerEndpoint)
class PortKeepingEndpoint:
    """``endpoint``, keeping the port it opened: ``listening()`` fires with it (with
    ``tcp:0`` that is how tests and tools learn which port the kernel picked)."""

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self._port: IListeningPort | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        opening: Deferred[IListeningPort] = self._endpoint.listen(factory)
        opening.addCallback(self._opened)
        return opening

    def _opened(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        waiting, self._waiting = self._waiting, []
        for listener in waiting:
            listener.callback(port)
        return port

    def listening(self) -> Deferred[IListeningPort]:
        if self._port is not None:
            return succeed(self._port)
        waiting: Deferred[IListeningPort] = Deferred()
        self._waiting.append(waiting)
        return waiting


class AdoptedPortService(Service):
    """Serves ``site`` on a listening socket inherited from the parent process."""

    def __init__(self, reactor: Any, fd: int, family: int, site: SquadSite) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family
        self._site = site
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        self.port = self._reactor.adoptStreamPort(self._fd, self._family, self._site)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


class KeepAliveDrain(Service):
    """Stopped right after the site stops listening: closes its kept-alive connections without
    losing a request.

    Each answer from then on says ``Connection: close`` and closes its connection, so a busy
    client moves to a new connection (another worker) between two requests. A connection still
    idle after ``idle_grace`` is closed then: closing one as its client sends a request would
    lose that request, and a client that has been quiet that long is unlikely to be sending.
    Connections with a request in flight close after their answer; ``DrainService`` waits for
    those.
    """

    def __init__(self, clock: IReactorTime, site: SquadSite, idle_grace: float = 1.0) -> None:
        self._clock = clock
        self._site = site
        self._idle_grace = idle_grace

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._drain())

    async def _drain(self) -> None:
        site = self._site
        site.keep_alive = False
        for channel in site.channels:
            # Requests already read were told keep-alive: their answers are not written yet.
            for request in channel.requests:
                if not request.startedWriting:
                    request.responseHeaders.setRawHeaders(b"connection", [b"close"])
                    channel.persistent = False
        waited = 0.0
        while waited < self._idle_grace and any(map(_idle, site.channels)):
            await deferLater(self._clock, 0.05)
            waited += 0.05
        for channel in [channel for channel in site.channels if _idle(channel)]:
            channel.loseConnection()


def _idle(channel: SquadChannel) -> bool:
    """Between two requests (nothing of a next one has arrived), and not closing already."""
    transport: Any = channel.transport
    closing = transport is None or transport.disconnecting
    return not closing and not channel.requests and not channel.receiving()


class DrainService(Service):
    """Stopped after the connections: waits (bounded) for requests still waiting on the
    database."""

    def __init__(self, clock: IReactorTime, api: SquadAPI, limit: float = 5.0) -> None:
        self._clock = clock
        self._api = api
        self._limit = limit

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._drain())

    async def _drain(self) -> None:
        waited = 0.0
        while self._api.waiting and waited < self._limit:
            await deferLater(self._clock, 0.05)
            waited += 0.05
        self._api.stop()


def build_process_service(
    settings: Settings,
    reactor: Any,
    adopt: tuple[int, int] | None = None,
    role: str = "process",
) -> MultiService:
    """One process's service tree, stopped in reverse order::

    SequentialMultiService "squad"
    ├── SettingsLog           one line: what this process runs with
    ├── DatabaseService       the txmongo pools (opened at start, after any fork)
    ├── VerifierConnections   with --verifier-url: the persistent HTTP pool
    ├── ProcessLease          heartbeat; takes over the work of dead processes
    ├── SlowWork              the slow step of every accepted user, durable
    ├── PasswordHasher        sealed password -> argon2id hash, in the background
    ├── DrainService          at stop: waits (bounded) for requests on the database
    ├── TimerService          queue sizes to gauges, once a second (MetricsSampler)
    ├── KeepAliveDrain        at stop: closes kept-alive connections between two requests
    └── "http"                the site on --port, or on the socket ``adopt`` (fd, family)
    """
    root = SequentialMultiService()
    root.setName("squad")
    SettingsLog(settings, role).setServiceParent(root)

    database = DatabaseService(
        settings.mongo_uri,
        settings.database,
        pool_size=POOL_SIZE,
        write_concern=settings.write_concern,
    )
    database.setServiceParent(root)
    store = database.store
    owner = new_owner_id()
    metrics = SquadMetrics.get()
    metrics.instance_info.labels(settings.instance_name).set(1)
    metrics.slow_step_max.set(
        settings.slow_max if settings.verifier_url is None else VERIFIER_TIMEOUT
    )
    sealer = PasswordSealer(settings.seal_key)
    activity = SignupActivity(reactor, heavy_per_second=HEAVY_SIGNUPS_PER_SECOND)

    writer = FinishWriter(reactor, store)
    hasher = PasswordHasher(
        reactor, sealer, store, writer, owner, busy=activity.busy, heavy=activity.heavy
    )
    slow_work = SlowWork(
        reactor,
        store,
        verification_for(settings, reactor, root),
        writer,
        owner,
        on_adopted=hasher.enqueue,
    )
    # A batch's passwords document may also record its slow steps: the slow work says when
    # it can go.
    hasher.on_batch_hashed = slow_work.passwords_done
    lease = ProcessLease(
        reactor,
        store,
        owner,
        settings.lease_seconds,
        # The slow steps first: they wait on the clock, the hashes only on the CPU. What a
        # killed process's passwords documents alone recorded, the hasher's take-over sets
        # down in ``pending`` for the next round.
        refillers=(slow_work.refill, hasher.refill),
        droppers=(slow_work.drop_accepted_before, hasher.drop_accepted_before),
        unowned_written_at=lambda: slow_work.unowned_written_at,
        on_live=hasher.note_live,
    )
    # The lease starts before the work it refills and stops after it has handed that back.
    lease.setServiceParent(root)
    slow_work.setServiceParent(root)
    hasher.setServiceParent(root)

    commit: GroupCommit[PendingSignup] = GroupCommit(
        reactor,
        recording_work(
            timed_write(
                reactor,
                retry_once_on_failover(
                    partial(store.insert_signups, hasher=owner),
                    lambda: store.users,
                    store.timeout,
                    on_retry=metrics.db_errors.labels("insert_signups_failover").inc,
                ),
                metrics,
            ),
            slow_work,
            hasher,
        ),
        max_batch=200,
        concurrency=POOL_SIZE - 2,
        on_batch=metrics.batch_size.observe,
    )
    api = SquadAPI(
        reactor,
        store,
        commit,
        slow_work,
        sealer,
        activity=activity,
        allow_flush=settings.allow_flush,
        on_shed=metrics.shed.inc,
        on_flush=hasher.drop_all,
        # Derived, not the seal key itself: a fingerprint must never help unseal anything.
        idempotency_secret=hmac.new(
            settings.seal_key, b"squad idempotency fingerprints", hashlib.sha256
        ).digest(),
    )

    # Stopped before the database (services stop in reverse order): in-flight answers finish.
    DrainService(reactor, api).setServiceParent(root)
    sampling = TimerService(1.0, MetricsSampler(metrics, slow_work, hasher).sample)
    sampling.clock = reactor
    sampling.setServiceParent(root)
    site = SquadSite(
        api.app.resource(),
        metrics=metrics,
        reactor=reactor,
        request_deadline=settings.request_timeout,
        max_connections=fit_connection_cap(settings.max_connections),
    )
    KeepAliveDrain(reactor, site).setServiceParent(root)
    http: Service
    if adopt is None:
        http = StreamServerEndpointService(
            PortKeepingEndpoint(
                endpoints.serverFromString(reactor, listen_description(settings.port))
            ),
            site,
        )
    else:
        http = AdoptedPortService(reactor, adopt[0], adopt[1], site)
    http.setName("http")
    http.setServiceParent(root)
    return root


def verification_for(settings: Settings, reactor: Any, root: MultiService) -> Verification:
    """The slow step's call: an HTTP POST to --verifier-url (its connection pool joins
    ``root``, to close at stop), or the stand-in timer."""
    if settings.verifier_url is None:
        return StandInVerification(reactor, settings.slow_min, settings.slow_max)
    connections = VerifierConnections(reactor)
    connections.setServiceParent(root)
    return HttpVerification(
        connections.client,
        settings.verifier_url,
        CircuitBreaker(reactor),
        reactor,
        timeout=VERIFIER_TIMEOUT,
    )
