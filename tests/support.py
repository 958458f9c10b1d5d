"""Integration-test helpers: a real squad process tree on a real database and real sockets.

``bin/test`` starts a throw-away embedded database and passes its URI in
``SQUAD_TEST_MONGO_URI``. Each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from typing import Any

import treq
from twisted.application.service import IService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase
from txmongo.connection import ConnectionPool

from squad.tap import Options, makeService


def database_uri() -> str:
    uri = os.environ.get("SQUAD_TEST_MONGO_URI")
    if not uri:
        raise SkipTest("needs a database: run ./bin/test (it sets SQUAD_TEST_MONGO_URI)")
    return uri


class RunningSquad:
    """A squad process tree listening on an ephemeral 127.0.0.1 port."""

    def __init__(self, service: IService, port: int, database: str, uri: str) -> None:
        self.service = service
        self.port = port
        self.database = database
        self.uri = uri
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **kwargs: Any) -> Deferred[Any]:
        return treq.get(self.url + path, persistent=False, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Deferred[Any]:
        return treq.post(self.url + path, persistent=False, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Deferred[Any]:
        return treq.delete(self.url + path, persistent=False, **kwargs)


async def start_squad(
    test: TestCase, *argv: str, database: str | None = None, uri: str | None = None
) -> RunningSquad:
    """Start squad in this reactor; stop it and drop its database when the test ends."""
    uri = uri or database_uri()
    database = database or f"squad_test_{uuid.uuid4().hex[:12]}"
    options = Options(environ={})
    options.parseOptions(
        [
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--mongo-uri",
            uri,
            "--database",
            database,
            "--seal-key-file",
            os.path.join(test.mktemp() + "-key"),
            "--workers",
            "1",
            *argv,
        ]
    )
    service = makeService(options, reactor)
    service.startService()
    http: Any = service.getServiceNamed("http")  # type: ignore[attr-defined]
    listening = await http.endpoint.listening()
    test.addCleanup(drop_database, uri, database)
    test.addCleanup(service.stopService)
    return RunningSquad(service, listening.getHost().port, database, uri)


def drop_database(uri: str, name: str) -> Deferred[None]:
    async def drop() -> None:
        pool = ConnectionPool(uri)
        try:
            await pool.drop_database(name)
        finally:
            await pool.disconnect()

    return ensureDeferred(drop())


async def mongo(uri: str, name: str) -> tuple[ConnectionPool, Any]:
    """A separate connection to look at what squad stored (closed by the caller)."""
    pool = ConnectionPool(uri)
    return pool, pool[name]


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a service started in its own session, and its children; SIGKILL after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
