"""Integration and tooling helpers: real squad process trees on a real database and real sockets.

``bin/test`` starts a throw-away embedded database and passes its URI in
``SQUAD_TEST_MONGO_URI``. Each test gets a database of its own, dropped afterwards.

- squad in this reactor: ``start_squad`` and the ``RunningSquad`` it returns.
- squad as production runs it (``twistd -n squad``, its own process group): ``SquadProcess``;
  any other service a tooling test starts and waits on: ``start_service``.
- A database of a test's own, to kill, freeze and restart: ``PrivateDatabase``.
- Waiting: ``eventually`` polls a check; ``request`` times one HTTP answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import treq
from bson import ObjectId
from twisted.application.service import IService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from txmongo.connection import ConnectionPool

from harness.probes import NotReady, free_port, http_status, port_open, wait_until
from squad.runtime.service_tree import build_process_service
from squad.tap import Options
from tests.signups import VALID_SIGNUP, signup

#: The checkout: bin/db, the twistd plugin and the packages the processes import.
ROOT = Path(__file__).resolve().parents[1]
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def database_uri() -> str:
    uri = os.environ.get("SQUAD_TEST_MONGO_URI")
    if not uri:
        raise SkipTest("needs a database: run ./bin/test (it sets SQUAD_TEST_MONGO_URI)")
    return uri


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def eventually(check: Callable[[], Awaitable[bool]], limit: float, what: str) -> float:
    """Seconds until ``check()`` is true; fails the test with ``what`` after ``limit``.

    A check that raises anything but ``AssertionError`` is looked at again (the database or
    squad may still be coming back); an ``AssertionError`` fails the test at once.
    """
    started = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - started
        except AssertionError:
            raise
        except Exception:
            pass
        if time.monotonic() - started > limit:
            raise AssertionError(f"{what}: not within {limit:g} s")
        await sleep(0.1)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer and how long it took."""

    code: int
    body: bytes
    headers: Any
    took: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def retry_after(self) -> list[bytes] | None:
        found: list[bytes] | None = self.headers.getRawHeaders(b"retry-after")
        return found


async def request(method: str, url: str, body: object = None) -> Answer:
    """``method url`` with ``body`` (if any) as JSON, on a connection of its own, read to the
    end."""
    data = None if body is None else json.dumps(body).encode()
    started = time.monotonic()
    response = await treq.request(
        method, url, data=data, headers=JSON_HEADERS, persistent=False, timeout=10
    )
    content = await response.content()
    return Answer(response.code, content, response.headers, time.monotonic() - started)


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

    def post_signup(
        self, body: Mapping[str, object] | None = None, headers: Mapping[str, str] | None = None
    ) -> Deferred[Any]:
        """POST /users with ``body`` (``VALID_SIGNUP`` by default) as JSON, and ``headers``."""
        return self.post(
            "/users",
            data=json.dumps(VALID_SIGNUP if body is None else body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )


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
    # One process tree in this reactor (makeService would start worker processes).
    service = build_process_service(options.settings, reactor)
    service.startService()
    http: Any = service.getServiceNamed("http")
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


def twistd() -> list[str]:
    beside = Path(sys.executable).parent / "twistd"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def squad_command(port: int, uri: str, database: str, *argv: str) -> list[str]:
    """``twistd -n squad`` (no pid file) on 127.0.0.1:``port`` and ``database`` at ``uri``."""
    return [
        *twistd(),
        "--pidfile=",
        "-n",
        "squad",
        "--port",
        f"tcp:{port}:interface=127.0.0.1",
        "--mongo-uri",
        uri,
        "--database",
        database,
        *argv,
    ]


def service_environment() -> dict[str, str]:
    """The suite's environment without squad's settings (SQUAD_*, the metrics folder), with the
    checkout importable: an editable install does not put ``twisted/plugins`` where twistd
    looks for plugins, and squad's workers import ``squad`` from there too."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SQUAD_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


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


class SquadProcess:
    """``twistd -n squad`` as a real process tree in its own process group, SIGKILLed whole
    when the test ends; its output goes to a log whose tail failures show."""

    def __init__(self, test: TestCase, uri: str, database: str, key_file: str, *argv: str) -> None:
        self.port = free_port()
        self.log_path = os.path.abspath(str(test.mktemp()) + ".log")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                squad_command(self.port, uri, database, "--seal-key-file", key_file, *argv),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=service_environment(),
            )
        test.addCleanup(self.kill)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-30:])

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)

    def kill(self) -> None:
        """SIGKILL the whole process group (the parent and every worker), and return once none
        of them is left, so that their sockets are closed before the test's reactor is checked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # The workers are not this test's children: wait for them by polling their group.
        deadline = time.monotonic() + 5
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)
                time.sleep(0.01)

    async def ready(self, limit: float = 30.0) -> None:
        """Return once GET /ready answers 204; fail with the log's tail if squad exits first or
        is not ready within ``limit`` seconds."""

        async def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"squad exited with status {self.process.returncode}")
            return (await request("GET", self.url + "/ready")).code == 204

        try:
            await eventually(serving, limit, "squad ready")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{self.log_tail()}") from None

    async def post(self, n: int) -> Answer:
        """POST /users with ``signup(n)``, a sign-up of its own."""
        return await request("POST", self.url + "/users", signup(n))

    async def post_many(self, count: int) -> list[ObjectId]:
        """POST ``count`` sign-ups; each must be acknowledged."""
        ids = []
        for n in range(count):
            answer = await self.post(n)
            assert answer.code == 201, (answer.code, answer.body)
            ids.append(ObjectId(answer.json()["_id"]))
        return ids


class PrivateDatabase:
    """``bin/db`` on its own port and folder: killed, frozen and restarted at will, and killed
    when the test ends."""

    def __init__(self, test: TestCase, environment: Mapping[str, str] | None = None) -> None:
        binary = os.environ.get("SQUAD_TEST_FERRETDB") or str(ROOT / ".tools/bin/ferretdb")
        if not os.path.exists(binary) and not shutil.which("mongod"):
            raise SkipTest(
                "needs the embedded database binary to start a private database: run"
                " ./bin/setup (./bin/test sets SQUAD_TEST_FERRETDB)"
            )
        self.port = free_port()
        self.data = os.path.abspath(str(test.mktemp()))
        self.log_path = self.data + ".log"
        self.process: subprocess.Popen[bytes] | None = None
        # bin/db passes its environment on to the database (e.g. FerretDB's fast-path switch)
        self.environment = {**os.environ, **(environment or {})}
        test.addCleanup(self.kill)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    async def start(self) -> float:
        """Start it (same port, same data) and return once it accepts connections."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "bin" / "db"), "--port", str(self.port), "--data", self.data],
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        async def accepting() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                with open(self.log_path, errors="replace") as log:
                    raise AssertionError(f"bin/db exited:\n{log.read()[-2000:]}")
            return port_open(self.port)

        return await eventually(accepting, 30, "the private database accepting connections")

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, number)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


def start_service(
    test: SynchronousTestCase, name: str, command: Sequence[str], port: int, cwd: Path | None = None
) -> str:
    """Start ``command``, a service that will listen on 127.0.0.1:``port``, in its own process
    group (stopped whole when the test ends), in ``cwd`` or a folder of the test's own, with
    its output in ``service.log`` there; return its URL once GET /health answers, or fail the
    test with the log."""
    workdir = Path(test.mktemp()).resolve()
    workdir.mkdir(parents=True)
    log_path = workdir / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd or workdir,
            env=service_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    test.addCleanup(stop_process_group, process)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        return 200 <= (http_status(url + "/health", timeout=2.0) or 0) < 300

    try:
        wait_until(healthy, 20.0, name, alive=lambda: process.poll() is None, interval=0.2)
    except NotReady as error:
        test.fail(f"{name} did not start: {error}\n{log_path.read_text(errors='replace')}")
    return url
