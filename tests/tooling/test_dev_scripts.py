"""bin/dev and bin/teardown pick docker compose when a Docker engine answers, the embedded
database otherwise.

There is no Docker engine here, so each test copies the scripts (with ``docker/compose.yaml``)
into a temporary checkout, where deleting ``var/`` is harmless, and puts a fake ``docker`` first
on ``PATH``: it records its arguments and the environment compose would see, and answers
``docker info`` as told. The compose path runs for real against it; the embedded path is checked
with ``bin/dev --dry-run`` (the real one would build and start a database).
"""

from __future__ import annotations

import shutil
import stat
from base64 import b64decode
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

REPOSITORY = Path(__file__).resolve().parents[2]
# System tools only (bash, coreutils): none of the tests may find a real docker by accident.
SYSTEM_PATH = "/usr/bin:/bin"

FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "{calls}"
if [ "$1" = compose ]; then
    printf 'SQUAD_SEAL_KEY=%s SQUAD_ALLOW_FLUSH=%s\\n' \\
        "$SQUAD_SEAL_KEY" "$SQUAD_ALLOW_FLUSH" >> "{env}"
fi
if [ "$1" = info ]; then exit {info_status}; fi
exit 0
"""


class Checkout:
    """A throw-away copy of the scripts, with a fake docker that records what it is asked."""

    def __init__(self, test: TestCase, *, docker: str | None) -> None:
        self.root = Path(test.mktemp()).resolve()
        for name in ("bin/dev", "bin/teardown", "bin/_common.sh", "docker/compose.yaml"):
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, self.root / name)
        self.calls = self.root / "docker-calls"
        self.env_log = self.root / "docker-env"
        self.path = SYSTEM_PATH
        if docker is not None:
            fake = self.root / "fakebin" / "docker"
            fake.parent.mkdir()
            info_status = 0 if docker == "engine" else 1
            fake.write_text(
                FAKE_DOCKER.format(calls=self.calls, env=self.env_log, info_status=info_status)
            )
            fake.chmod(0o755)
            self.path = f"{fake.parent}:{SYSTEM_PATH}"

    async def run(self, script: str, *args: str, **env: str) -> tuple[str, str, int]:
        out, err, code = await getProcessOutputAndValue(
            str(self.root / "bin" / script),
            args,
            env={"PATH": self.path, **env},
            path=str(self.root),
            reactor=reactor,
        )
        return out.decode(), err.decode(), code

    def docker_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


class DevScriptTests(TestCase):
    """Which path bin/dev takes, and what it runs on the compose path."""

    timeout = 30

    def setUp(self) -> None:
        if shutil.which("docker", path=SYSTEM_PATH):
            self.skipTest(f"a real docker is on {SYSTEM_PATH}: the fake could not stand in")

    async def test_engine_present_runs_compose_up_in_the_foreground(self) -> None:
        """
        With a Docker engine, bin/dev runs `docker compose -f docker/compose.yaml up --build`
        (nothing else: no setup, no embedded database), flush enabled, and says so.
        """
        checkout = Checkout(self, docker="engine")
        _, err, code = await checkout.run("dev")
        self.assertEqual(code, 0, err)
        compose = checkout.root / "docker" / "compose.yaml"
        self.assertEqual(checkout.docker_calls(), ["info", f"compose -f {compose} up --build"])
        self.assertIn("using docker compose", err)
        self.assertIn("SQUAD_NO_DOCKER=1", err)
        self.assertIn("SQUAD_ALLOW_FLUSH=1", checkout.env_log.read_text())

    async def test_compose_seal_key_is_created_once_and_private(self) -> None:
        """
        Without SQUAD_SEAL_KEY, the compose path makes a 32-byte key in var/docker/seal.key
        (mode 0600) and passes it to compose; a second run reuses it, since the data outlives
        the run; SQUAD_SEAL_KEY, when set, wins.
        """
        checkout = Checkout(self, docker="engine")
        await checkout.run("dev")
        await checkout.run("dev")
        await checkout.run("dev", SQUAD_SEAL_KEY="from-the-environment")
        keyfile = checkout.root / "var" / "docker" / "seal.key"
        key = keyfile.read_text().strip()
        self.assertEqual(len(b64decode(key, validate=True)), 32)
        self.assertEqual(stat.S_IMODE(keyfile.stat().st_mode), 0o600)
        keys = [line.split()[0] for line in checkout.env_log.read_text().splitlines()]
        self.assertEqual(
            keys,
            [f"SQUAD_SEAL_KEY={key}"] * 2 + ["SQUAD_SEAL_KEY=from-the-environment"],
        )

    async def test_compose_path_refuses_twistd_options(self) -> None:
        """twistd options cannot reach the container: bin/dev says so instead of dropping them."""
        checkout = Checkout(self, docker="engine")
        _, err, code = await checkout.run("dev", "--workers", "4")
        self.assertNotEqual(code, 0)
        self.assertIn("SQUAD_NO_DOCKER=1", err)
        self.assertEqual(checkout.docker_calls(), ["info"])

    async def test_no_engine_takes_the_embedded_path(self) -> None:
        """When `docker info` fails (a CLI but no engine), bin/dev uses the embedded database."""
        checkout = Checkout(self, docker="no-engine")
        out, err, code = await checkout.run("dev", "--dry-run", "--workers", "2")
        self.assertEqual(code, 0, err)
        self.assertIn("using the embedded database", err)
        self.assertIn("docker info' failed", err)
        self.assertEqual(
            out.splitlines(),
            [
                f"bin/db --port 27017 --data {checkout.root}/var/db",
                "twistd -n squad --allow-flush --workers 2",
            ],
        )
        self.assertEqual(checkout.docker_calls(), ["info"])

    async def test_no_docker_command_takes_the_embedded_path(self) -> None:
        """Without any docker on PATH, bin/dev uses the embedded database and says why."""
        checkout = Checkout(self, docker=None)
        out, err, code = await checkout.run("dev", "--dry-run")
        self.assertEqual(code, 0, err)
        self.assertIn("no docker command on PATH", err)
        self.assertIn("bin/db --port 27017", out)

    async def test_no_docker_variable_forces_the_embedded_path(self) -> None:
        """SQUAD_NO_DOCKER=1 picks the embedded database even with an engine, without asking it."""
        checkout = Checkout(self, docker="engine")
        out, err, code = await checkout.run("dev", "--dry-run", SQUAD_NO_DOCKER="1")
        self.assertEqual(code, 0, err)
        self.assertIn("SQUAD_NO_DOCKER=1 is set", err)
        self.assertIn("twistd -n squad --allow-flush", out)
        self.assertEqual(checkout.docker_calls(), [])

    async def test_mongo_uri_skips_docker_and_the_embedded_database(self) -> None:
        """With SQUAD_MONGO_URI, bin/dev runs squad against that database only (the contract)."""
        checkout = Checkout(self, docker="engine")
        out, err, code = await checkout.run(
            "dev", "--dry-run", SQUAD_MONGO_URI="mongodb://127.0.0.1:27999"
        )
        self.assertEqual(code, 0, err)
        self.assertIn("mongodb://127.0.0.1:27999", err)
        self.assertEqual(out.splitlines(), ["twistd -n squad --allow-flush"])
        self.assertEqual(checkout.docker_calls(), [])


class TeardownScriptTests(TestCase):
    """bin/teardown removes the compose stack where there is an engine, and var/ always."""

    timeout = 30

    def setUp(self) -> None:
        if shutil.which("docker", path=SYSTEM_PATH):
            self.skipTest(f"a real docker is on {SYSTEM_PATH}: the fake could not stand in")

    def make_var(self, checkout: Checkout) -> None:
        (checkout.root / "var" / "docker").mkdir(parents=True)
        (checkout.root / "var" / "docker" / "seal.key").write_text("key\n")

    async def test_engine_present_removes_the_stack_and_its_volumes(self) -> None:
        """
        With an engine, bin/teardown runs `docker compose ... down --volumes` (with a seal key
        set, since compose interpolates the file even for down) and deletes var/.
        """
        checkout = Checkout(self, docker="engine")
        self.make_var(checkout)
        _, err, code = await checkout.run("teardown")
        self.assertEqual(code, 0, err)
        compose = checkout.root / "docker" / "compose.yaml"
        self.assertEqual(checkout.docker_calls(), ["info", f"compose -f {compose} down --volumes"])
        self.assertNotIn("SQUAD_SEAL_KEY= ", checkout.env_log.read_text())
        self.assertFalse((checkout.root / "var").exists())
        self.assertIn("removing the compose stack", err)

    async def test_no_engine_only_deletes_var(self) -> None:
        """Without an engine, bin/teardown leaves Docker alone, says why, and deletes var/."""
        for docker in ("no-engine", None):
            checkout = Checkout(self, docker=docker)
            self.make_var(checkout)
            _, err, code = await checkout.run("teardown")
            self.assertEqual(code, 0, err)
            self.assertNotIn("compose", "\n".join(checkout.docker_calls()))
            self.assertFalse((checkout.root / "var").exists())
            self.assertIn("no compose stack to remove", err)
