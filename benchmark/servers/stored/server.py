"""
REFERENCE, NOT SQUAD: the thinnest service that stores every sign-up before answering.

A Klein app on Twisted with txmongo: ``POST /users`` parses the JSON body (no validation beyond
"a JSON object"), drops the password (no plaintext password is stored anywhere, not even the
benchmark's fake ones), adds ``processed: false`` and the dates, and queues the document. Once
per reactor turn, every document queued during that turn is written with one ``insert_many``,
and each request is answered 201 (the stored user, as JSON) once the database acknowledged that
write; 503 if it failed. No slow step, no password hash, no background work, no access log.

With ``--processed`` (the sweep's ``stored-processed``) it also has the one effect squad's slow
step must have, and nothing else of it: each stored user is marked ``processed: true`` with a new
``date_updated`` a random ``--slow-min`` to ``--slow-max`` seconds (default 5-15) after its
insert was acknowledged; every 0.2 s the users then due are updated with one
``update_many({_id: {$in: ids}}, {$set: {processed: true, date_updated: now}})``. The due users
are kept IN MEMORY ONLY: a process that stops forgets them, and a failed update is retried at
the next tick. It measures what that write costs the database, not a durable service.

It runs the same number of processes as squad (``--workers``, default: the CPU count) on one
port the way squad and the ceiling share it: a parent binds one ``SO_REUSEPORT`` socket per
worker (``squad.runtime.supervisor``) and each worker adopts its own (``adoptStreamPort``). It
writes into
its own database (``squad_stored`` by default) on the database server squad uses, so the sweep
shows what storing costs on that server with nothing else on top. ``GET /health`` answers 204,
``DELETE /collections`` empties its ``users`` (204, always allowed: a benchmark fixture).

    python -m benchmark.servers.stored.server --port 9300 --workers 2 \
        --mongo-uri mongodb://127.0.0.1:27017
    python -m benchmark.servers.stored.server --port 9301 --processed \
        --database squad_stored_processed
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from klein import Klein
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from txmongo.connection import ConnectionPool

from benchmark.servers.shared_port import serve_workers

__all__ = ["Stored", "main"]

DATABASE_TIMEOUT = 10.0
# How often the users whose processing is due are marked processed, all in one update.
PROCESS_INTERVAL = 0.2
UNAVAILABLE = b'{"error": "unavailable", "message": "The sign-up could not be stored."}'


class Stored:
    """
    The three routes over one txmongo pool; one ``insert_many`` per reactor turn. With
    C{processed} (the slow step's range in seconds), each stored user is also marked processed
    that long after its insert, by L{process_due}.
    """

    app = Klein()

    def __init__(
        self,
        pool: ConnectionPool,
        database: str,
        clock: IReactorTime,
        processed: tuple[float, float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._users: Any = pool[database]["users"]
        self._clock = clock
        self._queued: list[tuple[dict[str, Any], defer.Deferred[bytes]]] = []
        self._processed = processed
        self._rng = rng or random.Random()
        # (due time, user id): the users waiting to be marked processed, soonest first.
        self._due: list[tuple[float, ObjectId]] = []
        self.inserts = 0
        self.updates = 0

    def start_processing(self, interval: float = PROCESS_INTERVAL) -> task.LoopingCall | None:
        """Run L{process_due} every C{interval} seconds (None without C{processed})."""
        if self._processed is None:
            return None
        loop = task.LoopingCall(self.process_due)
        loop.clock = self._clock
        loop.start(interval, now=False)
        return loop

    def process_due(self) -> defer.Deferred[None] | None:
        """
        Mark every user now due processed, in one ``update_many``; a failed update puts its
        users back, due at once. LoopingCall waits for the update, so a slow one makes the next
        batch larger rather than piling updates up.
        """
        now = self._clock.seconds()
        due: list[ObjectId] = []
        while self._due and self._due[0][0] <= now:
            due.append(heapq.heappop(self._due)[1])
        if not due:
            return None
        self.updates += 1
        updated: defer.Deferred[Any] = self._users.update_many(
            {"_id": {"$in": due}},
            {"$set": {"processed": True, "date_updated": datetime.fromtimestamp(now, UTC)}},
            timeout=DATABASE_TIMEOUT,
        )

        def failed(failure: Failure) -> None:
            print(f"update of {len(due)} users failed, retried: {failure.value!r}", flush=True)
            for identifier in due:
                heapq.heappush(self._due, (now, identifier))

        return updated.addCallbacks(lambda _: None, failed)

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    @app.route("/collections", methods=["DELETE"])
    async def flush(self, request: IRequest) -> bytes:
        # A drop, as squad's own flush: FerretDB deletes a whole collection with one
        # `IN (...)` of every id, which SQLite refuses past 32,766 documents.
        await self._users.drop(timeout=DATABASE_TIMEOUT)
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
        now = datetime.fromtimestamp(self._clock.seconds(), UTC)
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
        if stored and self._processed is not None:
            low, high = self._processed
            now = self._clock.seconds()
            for user, _ in batch:
                heapq.heappush(self._due, (now + self._rng.uniform(low, high), user["_id"]))
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


def _worker(
    fd: int, uri: str, database: str, pool_size: int, processed: tuple[float, float] | None
) -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorSocket

    pool = ConnectionPool(uri, pool_size=pool_size)
    stored = Stored(pool, database, reactor, processed)
    stored.start_processing()
    site = _QuietSite(stored.app.resource())
    site.displayTracebacks = False
    # Site is a ServerFactory; Twisted's stubs want its generic protocol parameter spelled out.
    IReactorSocket(reactor).adoptStreamPort(fd, socket.AF_INET, site)  # type: ignore[arg-type]
    os.close(fd)
    reactor.addSystemEventTrigger("before", "shutdown", pool.disconnect)
    reactor.run()


def _supervise(
    port: int,
    workers: int,
    uri: str,
    database: str,
    pool_size: int,
    processed: tuple[float, float] | None,
) -> None:
    marked = (
        ""
        if processed is None
        else f", users marked processed {processed[0]:g}-{processed[1]:g} s after their insert"
    )
    print(
        f"stored listening on 127.0.0.1:{port} with {workers} workers, database {database}"
        + marked,
        flush=True,
    )
    arguments = ["--mongo-uri", uri, "--database", database, "--pool-size", str(pool_size)]
    if processed is not None:
        arguments += [
            "--processed",
            "--slow-min",
            f"{processed[0]}",
            "--slow-max",
            f"{processed[1]}",
        ]
    serve_workers(port, workers, "benchmark.servers.stored.server", arguments)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stored reference until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.servers.stored.server",
        description=(
            "REFERENCE (parse, one insert_many per reactor turn, 201; with --processed, each "
            "user marked processed later, in memory only). Not squad."
        ),
    )
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mongo-uri", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--database", default="squad_stored")
    # squad's connections per process (squad.runtime.service_tree.POOL_SIZE): the same database
    # parallelism.
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument(
        "--processed",
        action="store_true",
        help="also mark each user processed --slow-min to --slow-max s after its insert",
    )
    parser.add_argument("--slow-min", type=float, default=5.0)
    parser.add_argument("--slow-max", type=float, default=15.0)
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if not 0 <= options.slow_min <= options.slow_max:
        parser.error("--slow-min and --slow-max: 0 <= min <= max")
    processed = (options.slow_min, options.slow_max) if options.processed else None
    if options.worker_fd is not None:
        _worker(
            options.worker_fd, options.mongo_uri, options.database, options.pool_size, processed
        )
    else:
        _supervise(
            options.port,
            max(1, options.workers),
            options.mongo_uri,
            options.database,
            options.pool_size,
            processed,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
