"""
REFERENCE, NOT SQUAD: the thinnest service that stores every sign-up before answering.

A Klein app on Twisted with txmongo: ``POST /users`` parses the JSON body (no validation beyond
"a JSON object"), drops the password (no plaintext password is stored anywhere, not even the
benchmark's fake ones), adds ``processed: false`` and the dates, and queues the document. Once
per reactor turn, every document queued during that turn is written with one ``insert_many``,
and each request is answered 201 (the stored user, as JSON) once the database acknowledged that
write; 503 if it failed. No slow step, no password hash, no background work, no access log.

It runs the same number of processes as squad (``--workers``, default: the CPU count) on one
port the way squad and the ceiling share it: a parent binds one ``SO_REUSEPORT`` socket per
worker (``squad.runtime.supervisor``) and each worker adopts its own (``adoptStreamPort``). It
writes into
its own database (``squad_stored`` by default) on the database server squad uses, so the sweep
shows what storing costs on that server with nothing else on top. ``GET /health`` answers 204,
``DELETE /collections`` empties its ``users`` (204, always allowed: a benchmark fixture).

    python -m benchmark.stored.server --port 9300 --workers 2 --mongo-uri mongodb://127.0.0.1:27017
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from txmongo.connection import ConnectionPool

from benchmark.shared_port import serve_workers

__all__ = ["Stored", "main"]

DATABASE_TIMEOUT = 10.0
UNAVAILABLE = b'{"error": "unavailable", "message": "The sign-up could not be stored."}'


class Stored:
    """The three routes over one txmongo pool; one ``insert_many`` per reactor turn."""

    app = Klein()

    def __init__(self, pool: ConnectionPool, database: str, clock: IReactorTime) -> None:
        self._users: Any = pool[database]["users"]
        self._clock = clock
        self._queued: list[tuple[dict[str, Any], defer.Deferred[bytes]]] = []
        self.inserts = 0

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    @app.route("/collections", methods=["DELETE"])
    async def flush(self, request: IRequest) -> bytes:
        await self._users.delete_many({}, timeout=DATABASE_TIMEOUT)
        request.setResponseCode(204)
        return b""

    @app.route("/users", methods=["POST"])
    def create(self, request: IRequest) -> defer.Deferred[bytes] | bytes:
        request.setHeader(b"content-type", b"application/json")
        try:
            body = json.loads(request.content.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            request.setResponseCode(400)
            return b'{"error": "invalid_json", "message": "The body must be a JSON object."}'
        body.pop("password", None)
        now = datetime.now(UTC)
        user = {
            **body,
            "_id": ObjectId(),
            "processed": False,
            "date_created": now,
            "date_updated": now,
        }
        # Klein cancels a handler's Deferred when its client goes away; the write it belongs to
        # goes on for the others in its batch, so cancelling does nothing here.
        answered: defer.Deferred[bytes] = defer.Deferred(lambda _: None)
        if not self._queued:
            # callLater(0) runs after the reactor has handled every event of this turn: all the
            # sign-ups parsed meanwhile go into the same insert.
            self._clock.callLater(0, self._write)
        self._queued.append((user, answered))
        answered.addCallback(self._answer, request, user)
        return answered

    def _write(self) -> None:
        batch, self._queued = self._queued, []
        self.inserts += 1
        written = self._users.insert_many(
            [user for user, _ in batch], ordered=False, timeout=DATABASE_TIMEOUT
        )
        written.addBoth(self._written, batch)

    def _written(
        self, result: object, batch: list[tuple[dict[str, Any], defer.Deferred[bytes]]]
    ) -> None:
        stored = b"" if isinstance(result, Failure) else b"stored"
        for _, answered in batch:
            if not answered.called:
                answered.callback(stored)

    @staticmethod
    def _answer(stored: bytes, request: IRequest, user: dict[str, Any]) -> bytes:
        if not stored:
            request.setResponseCode(503)
            return UNAVAILABLE
        identifier = str(user["_id"])
        request.setResponseCode(201)
        request.setHeader(b"location", f"/users/{identifier}".encode())
        shown = {
            **user,
            "_id": identifier,
            "date_created": user["date_created"].isoformat(),
            "date_updated": user["date_updated"].isoformat(),
        }
        return json.dumps(shown).encode()


class _QuietSite(Site):
    """No access log line per request."""

    def log(self, request: object) -> None:
        pass


def _worker(fd: int, uri: str, database: str, pool_size: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorSocket

    pool = ConnectionPool(uri, pool_size=pool_size)
    site = _QuietSite(Stored(pool, database, reactor).app.resource())
    site.displayTracebacks = False
    # Site is a ServerFactory; Twisted's stubs want its generic protocol parameter spelled out.
    IReactorSocket(reactor).adoptStreamPort(fd, socket.AF_INET, site)  # type: ignore[arg-type]
    os.close(fd)
    reactor.addSystemEventTrigger("before", "shutdown", pool.disconnect)
    reactor.run()


def _supervise(port: int, workers: int, uri: str, database: str, pool_size: int) -> None:
    print(
        f"stored listening on 127.0.0.1:{port} with {workers} workers, database {database}",
        flush=True,
    )
    serve_workers(
        port,
        workers,
        "benchmark.stored.server",
        ("--mongo-uri", uri, "--database", database, "--pool-size", str(pool_size)),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stored reference until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.stored.server",
        description="REFERENCE (parse, one insert_many per reactor turn, 201). Not squad.",
    )
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mongo-uri", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--database", default="squad_stored")
    # squad's connections per process (squad.runtime.service_tree.POOL_SIZE): the same database
    # parallelism.
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker_fd is not None:
        _worker(options.worker_fd, options.mongo_uri, options.database, options.pool_size)
    else:
        _supervise(
            options.port,
            max(1, options.workers),
            options.mongo_uri,
            options.database,
            options.pool_size,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
