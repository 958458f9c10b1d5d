"""
REFERENCE CEILING, NOT SQUAD: the fastest this stack can answer ``POST /users`` on this machine.

A bare Klein app on Twisted: it parses the JSON body, checks that the five fields are strings,
and answers 201 with a user shaped like squad's (an id, the fields without the password,
``processed: false``, dates), with no database, no slow step, no other I/O. It runs the same
number of processes as squad (``--workers``, default: the CPU count) on one port the way squad
shares it: a parent binds one ``SO_REUSEPORT`` socket per worker (``squad.runtime.supervisor``) and
each
worker adopts its own (``adoptStreamPort``), so connections spread over the workers alike in
both. No access log.

Whatever squad adds on top (validation, hashing, the database, the slow step) costs throughput;
the sweep shows by how much. ``GET /health`` and ``DELETE /collections`` answer 204.

    python -m benchmark.servers.ceiling.server --port 9200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from benchmark.servers.shared_port import serve_workers

__all__ = ["Ceiling", "main"]

FIELDS = ("firstName", "lastName", "email", "username", "password")


class Ceiling:
    """The three routes, with no I/O at all."""

    app = Klein()

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    @app.route("/collections", methods=["DELETE"])
    def flush(self, request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    @app.route("/users", methods=["POST"])
    def create(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        try:
            body = json.loads(request.content.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in FIELDS):
            request.setResponseCode(400)
            return b'{"error": "invalid_body", "message": "Send the five string fields."}'
        now = datetime.now(UTC).isoformat()
        identifier = os.urandom(12).hex()
        user = {
            "_id": identifier,
            "firstName": body["firstName"],
            "lastName": body["lastName"],
            "email": body["email"],
            "username": body["username"],
            "processed": False,
            "date_created": now,
            "date_updated": now,
        }
        request.setResponseCode(201)
        request.setHeader(b"location", f"/users/{identifier}".encode())
        return json.dumps(user).encode()


class _QuietSite(Site):
    """No access log line per request."""

    def log(self, request: object) -> None:
        pass


def _worker(fd: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorSocket

    site = _QuietSite(Ceiling().app.resource())
    site.displayTracebacks = False
    # Site is a ServerFactory; Twisted's stubs want its generic protocol parameter spelled out.
    IReactorSocket(reactor).adoptStreamPort(fd, socket.AF_INET, site)  # type: ignore[arg-type]
    os.close(fd)
    reactor.run()


def _supervise(port: int, workers: int) -> None:
    print(f"ceiling listening on 127.0.0.1:{port} with {workers} workers", flush=True)
    serve_workers(port, workers, "benchmark.servers.ceiling.server", ())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ceiling until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.servers.ceiling.server",
        description="REFERENCE CEILING (bare Klein, no I/O). Not squad.",
    )
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker_fd is not None:
        _worker(options.worker_fd)
    else:
        _supervise(options.port, max(1, options.workers))


if __name__ == "__main__":
    main(sys.argv[1:])
