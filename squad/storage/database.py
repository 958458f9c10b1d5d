"""The txmongo connection pool as a service: opened when squad starts, closed when it stops."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from txmongo.connection import ConnectionPool

from squad.storage.store import Store

__all__ = ["DatabaseService", "connect"]

log = Logger()


def connect(uri: str, pool_size: int, write_concern: int | str) -> ConnectionPool:
    """A pool tuned for failing fast and coming back fast.

    txmongo reconnects forever with exponential backoff up to ``max_delay`` (60 s by default):
    after an outage the next try could be a minute away. We cap it at 1 s so the service is
    ready again within a second of the database's return. Each FerretDB connection serves one
    request at a time, so ``pool_size`` is the real database parallelism.
    """
    pool = ConnectionPool(
        uri,
        pool_size=pool_size,
        retry_delay=0.1,
        max_delay=1.0,
        ping_interval=5,
        ping_timeout=5,
        w=write_concern,
    )
    # A reconnecting factory that is noisy logs every retry, several a second per connection
    # while the database is down; the outage is reported once by the tasks that need it.
    for factory in pool.getprotocols():
        factory.noisy = False
    return pool


class DatabaseService(Service):
    """Owns the pool and the ``Store`` built on it."""

    def __init__(
        self,
        uri: str,
        database: str,
        *,
        pool_size: int = 4,
        write_concern: int | str = 1,
        timeout: float = 1.5,
    ) -> None:
        self._uri = uri
        self._database = database
        self._pool_size = pool_size
        self._write_concern = write_concern
        self._timeout = timeout
        self.pool: ConnectionPool | None = None
        self.background_pool: ConnectionPool | None = None
        self.store = Store(timeout=timeout)

    def startService(self) -> None:
        super().startService()
        # Created here, not at import or configuration time: with several worker processes
        # each must open its own sockets after the fork.
        self.pool = connect(self._uri, self._pool_size, self._write_concern)
        self.background_pool = connect(self._uri, 1, self._write_concern)
        self.store.attach(self.pool[self._database], self.background_pool[self._database])

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self.pool is None:
            return None
        pool, self.pool = self.pool, None
        background, self.background_pool = self.background_pool, None
        closing = [pool.disconnect()]
        if background is not None:
            closing.append(background.disconnect())
        return gatherResults(closing)
