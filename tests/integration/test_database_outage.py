"""The database dies and comes back: fast 503s meanwhile, recovery without a restart.

Uses a private embedded database (bin/db on a free port) so that killing it disturbs no other
test. squad runs in this reactor, on real sockets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import RunningSquad, database_uri, start_squad

ROOT = Path(__file__).resolve().parents[2]
SIGNUP = {
    "firstName": "Katherine",
    "lastName": "Johnson",
    "email": "katherine@example.org",
    "username": "kjohnson",
    "password": "trajectories-1962",
}
JSON_HEADERS: dict[bytes | str, bytes | str] = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateDatabase:
    """bin/db on its own port and folder, killed and restarted at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="squad-outage-db-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(ROOT / "bin" / "db"), "--port", str(self.port), "--data", self.data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.data, ignore_errors=True)


async def wait_for_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


async def post(squad: RunningSquad) -> tuple[int, float, list[str] | None]:
    started = reactor.seconds()
    response = await squad.post("/users", data=json.dumps(SIGNUP).encode(), headers=JSON_HEADERS)
    await response.content()
    return response.code, reactor.seconds() - started, response.headers.getRawHeaders("retry-after")


class DatabaseOutageTests(TestCase):
    timeout = 90

    async def test_outage_answers_fast_and_recovers_by_itself(self) -> None:
        """While the database is down POST /users answers 503 with Retry-After within 2.5 s and
        /ready answers 503; once it is back /ready returns 204 within 15 s, without restarting
        squad, and users acknowledged before the outage are still there."""
        database_uri()  # the suite's database must be there too (bin/test built bin/db's binary)
        if not (ROOT / ".tools" / "bin" / "ferretdb").exists() and not shutil.which("mongod"):
            raise SkipTest("no embedded database binary: run ./bin/setup")
        db = PrivateDatabase()
        self.addCleanup(db.cleanup)
        db.start()
        await wait_for_port(db.port)
        squad = await start_squad(self, uri=db.uri)

        code, _, _ = await post(squad)
        self.assertEqual(code, 201)
        before = json.loads(
            await (
                await squad.post("/users", data=json.dumps(SIGNUP).encode(), headers=JSON_HEADERS)
            ).content()
        )

        db.kill()
        for _ in range(3):
            code, took, retry_after = await post(squad)
            self.assertEqual(code, 503)
            self.assertLess(took, 2.5)
            self.assertTrue(retry_after)
        ready = await squad.get("/ready")
        self.assertEqual(ready.code, 503)

        db.start()
        back = reactor.seconds()
        while (await squad.get("/ready")).code != 204:
            self.assertLess(reactor.seconds() - back, 15, "not ready 15 s after the database")
            await deferLater(reactor, 0.2, lambda: None)
        code, _, _ = await post(squad)
        self.assertEqual(code, 201)
        found = await squad.get(f"/users/{before['_id']}")
        self.assertEqual(found.code, 200)
        await found.content()

    async def test_killed_under_load_every_answer_fast_and_every_201_kept(self) -> None:
        """Ten clients post back to back while the database is SIGKILLed and restarted: every
        answer is a 201 or a 503 with Retry-After, none takes over 2.5 s, sign-ups succeed
        again after the restart without restarting squad, and every user answered 201 —
        before, during or after the outage — is in the database."""
        database_uri()
        if not (ROOT / ".tools" / "bin" / "ferretdb").exists() and not shutil.which("mongod"):
            raise SkipTest("no embedded database binary: run ./bin/setup")
        db = PrivateDatabase()
        self.addCleanup(db.cleanup)
        db.start()
        await wait_for_port(db.port)
        squad = await start_squad(self, uri=db.uri)

        answers: list[tuple[int, float, list[str] | None, str | None]] = []
        phase = {"running": True}

        async def client() -> None:
            while phase["running"]:
                started = reactor.seconds()
                response = await squad.post(
                    "/users", data=json.dumps(SIGNUP).encode(), headers=JSON_HEADERS
                )
                body = json.loads(await response.content())
                answers.append(
                    (
                        response.code,
                        reactor.seconds() - started,
                        response.headers.getRawHeaders("retry-after"),
                        body.get("_id"),
                    )
                )

        clients = [ensureDeferred(client()) for _ in range(10)]
        await deferLater(reactor, 1.0, lambda: None)
        db.kill()
        await deferLater(reactor, 3.0, lambda: None)
        db.start()
        await wait_for_port(db.port)
        restarted_at = len(answers)
        deadline = reactor.seconds() + 15
        while not any(code == 201 for code, *_ in answers[restarted_at:]):
            self.assertLess(reactor.seconds(), deadline, "no 201 within 15 s of the restart")
            await deferLater(reactor, 0.2, lambda: None)
        await deferLater(reactor, 1.0, lambda: None)
        phase["running"] = False
        results = await DeferredList(clients, consumeErrors=True)
        self.assertTrue(all(ok for ok, _ in results), results)

        codes = {code for code, *_ in answers}
        self.assertEqual(codes, {201, 503}, codes)
        for code, took, retry_after, _ in answers:
            self.assertLess(took, 2.5)
            if code == 503:
                self.assertTrue(retry_after)
        acknowledged = [user_id for code, _, _, user_id in answers if code == 201]
        for user_id in acknowledged:
            found = await squad.get(f"/users/{user_id}")
            self.assertEqual(found.code, 200, f"acknowledged user {user_id} is missing")
            await found.content()
