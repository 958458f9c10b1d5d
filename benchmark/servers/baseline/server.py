"""
BASELINE: THE SEED'S ORIGINAL BEHAVIOUR, KEPT ONLY AS THE BENCHMARK'S "BEFORE". NOT SQUAD.

``POST /users`` inserts the user into MongoDB, then waits the slow verification step (a random
5 to 15 s, the original service's ``somethingSlow``), marks the user processed and only then
answers 201. So every request holds its connection for 5 to 15 s, against a 10 s client
timeout: this is the problem squad exists to fix, reproduced so that before and after stand on
one chart.

One process, one txmongo pool, no validation beyond "a JSON object", no access log:
deliberately plain, as the original service was. It uses its own database (``squad_baseline``)
so that it never touches squad's data, and it stores no password at all (not even the fake ones the
benchmark sends): no plaintext password anywhere, as squad requires.

    python -m benchmark.servers.baseline.server --port 9100 --mongo-uri mongodb://127.0.0.1:27017

It answers ``GET /health`` (204), ``DELETE /collections`` (204, always allowed: it is a
benchmark fixture) and ``POST /users``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from klein import Klein
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from txmongo.connection import ConnectionPool

__all__ = ["Baseline", "main"]

DATABASE_TIMEOUT = 30.0


def _keep_running(work: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """
    A Deferred that follows C{work} but whose cancellation leaves C{work} running. Klein
    cancels a handler's Deferred when the client goes away (here: after autocannon's 10 s
    timeout); the original service, like most, went on with the slow step and the update anyway.
    """
    outer: defer.Deferred[Any] = defer.Deferred(lambda _: None)

    def follow(result: object) -> None:
        if not outer.called:
            outer.callback(result)
        elif isinstance(result, Failure):
            result.trap(defer.CancelledError)

    work.addBoth(follow)
    return outer


class Baseline:
    """The original service's three routes over one txmongo pool."""

    app = Klein()

    def __init__(
        self,
        pool: ConnectionPool,
        database: str,
        clock: IReactorTime,
        slow_min: float,
        slow_max: float,
    ) -> None:
        self._users = pool[database]["users"]
        self._clock = clock
        self._slow = (slow_min, slow_max)

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
    def create(self, request: IRequest) -> defer.Deferred[Any] | bytes:
        try:
            body = json.loads(request.content.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "invalid_json", "message": "The body must be a JSON object."}'
        return _keep_running(defer.ensureDeferred(self._sign_up(request, body)))

    async def _sign_up(self, request: IRequest, body: dict[str, Any]) -> bytes:
        now = datetime.now(UTC)
        body.pop("password", None)
        user = {**body, "processed": False, "date_created": now, "date_updated": now}
        await self._users.insert_one(user, timeout=DATABASE_TIMEOUT)
        # The original service's somethingSlow, awaited before the answer: the baseline's point.
        await task.deferLater(self._clock, random.uniform(*self._slow))
        await self._users.update_one(
            {"_id": user["_id"]},
            {"$set": {"processed": True, "date_updated": datetime.now(UTC)}},
            timeout=DATABASE_TIMEOUT,
        )
        user["_id"] = str(user["_id"])
        user["processed"] = True
        request.setResponseCode(201)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(user, default=lambda value: value.isoformat()).encode()


class _QuietSite(Site):
    """No access log line per request: the original service had none either."""

    def log(self, request: object) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> None:
    """Run the baseline until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.servers.baseline.server",
        description=(
            "BASELINE (the original service's behaviour: answer only after the slow step). "
            "Not squad."
        ),
    )
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--mongo-uri", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--database", default="squad_baseline")
    parser.add_argument("--slow-min", type=float, default=5.0)
    parser.add_argument("--slow-max", type=float, default=15.0)
    parser.add_argument("--pool-size", type=int, default=10)
    options = parser.parse_args(argv)

    from twisted.internet import reactor

    pool = ConnectionPool(options.mongo_uri, pool_size=options.pool_size)
    baseline = Baseline(pool, options.database, reactor, options.slow_min, options.slow_max)
    site = _QuietSite(baseline.app.resource())
    site.displayTracebacks = False
    endpoint = endpoints.TCP4ServerEndpoint(
        reactor, options.port, backlog=4096, interface="127.0.0.1"
    )
    listening = endpoint.listen(site)
    listening.addCallback(
        lambda port: print(f"baseline listening on 127.0.0.1:{options.port}", flush=True)
    )

    def cannot_listen(failure: Failure) -> None:
        print(f"baseline cannot listen: {failure.getErrorMessage()}", flush=True)
        reactor.stop()

    listening.addErrback(cannot_listen)
    reactor.addSystemEventTrigger("before", "shutdown", pool.disconnect)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
