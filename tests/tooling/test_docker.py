"""docker/: what can be checked without a Docker engine.

The compose file is parsed with PyYAML and the Dockerfile with a small reader of its
instructions; the tests pin what the README promises (the services, the port, the database
image and its volume) and what production needs (a non-root user, a health check, the API
waiting for a healthy database, no secret baked into the image, Prometheus with the alert rules
on request).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
IGNORE = DOCKER / "Dockerfile.dockerignore"
PROMETHEUS = DOCKER / "prometheus"


def load_compose() -> dict[str, Any]:
    with COMPOSE.open(encoding="utf-8") as file:
        document: dict[str, Any] = yaml.safe_load(file)
    return document


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    """The JSON (exec) form of CMD or HEALTHCHECK CMD, or the shell form split like sh."""
    if arguments.startswith("["):
        parsed = json.loads(arguments)
        assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
        return parsed
    return shlex.split(arguments)


def ignored(path: str) -> bool:
    """Whether Dockerfile.dockerignore keeps ``path`` (or a folder holding it) out of the build
    context: the last pattern that matches the path or one of its parents decides."""
    if not IGNORE.exists():
        return False
    patterns = [
        line.strip()
        for line in IGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(glob).replace(".*", "[^/]*")
        if glob.startswith("**/"):
            regex = "(?:.*/)?" + fnmatch.translate(glob[3:]).replace(".*", "[^/]*")
        if any(re.match(regex, prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


class ComposeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.compose = load_compose()
        self.services: dict[str, Any] = self.compose["services"]

    def test_services(self) -> None:
        """The compose file parses and holds the api and mongo services."""
        self.assertEqual(set(self.services), {"api", "mongo", "prometheus"})

    def test_prometheus_only_on_request(self) -> None:
        """Prometheus is behind the monitoring profile, so a plain `up` starts squad and its
        database alone, and the others belong to no profile."""
        self.assertEqual(self.services["prometheus"]["profiles"], ["monitoring"])
        self.assertNotIn("profiles", self.services["api"])
        self.assertNotIn("profiles", self.services["mongo"])

    def test_prometheus_is_the_official_image_pinned(self) -> None:
        """Prometheus is Docker Hub's prom/prometheus at an exact version, never a moving tag."""
        image = self.services["prometheus"]["image"]
        self.assertRegex(image, r"^(?:docker\.io/)?prom/prometheus:v\d+\.\d+\.\d+$")

    def test_prometheus_mounts_its_configuration_read_only(self) -> None:
        """Both files in docker/prometheus/ are mounted read-only where Prometheus reads them:
        its configuration at the image's default path, the rules where the configuration
        loads them from."""
        mounts = {}
        for volume in self.services["prometheus"]["volumes"]:
            source, _, rest = volume.partition(":")
            target, _, mode = rest.partition(":")
            mounts[target] = (source, mode)
        configuration = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
        (rules,) = configuration["rule_files"]
        for target, name in (
            ("/etc/prometheus/prometheus.yml", "prometheus.yml"),
            (rules, "alerts.yml"),
        ):
            source, mode = mounts[target]
            self.assertEqual(mode, "ro", target)
            self.assertTrue((COMPOSE.parent / source).samefile(PROMETHEUS / name), source)

    def test_prometheus_scrapes_the_api(self) -> None:
        """The scrape configuration's squad job (the job the alerts name) reads GET /metrics
        from the api service on the port the image exposes."""
        configuration = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
        (job,) = configuration["scrape_configs"]
        self.assertEqual(job["job_name"], "squad")
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        targets = [target for group in job["static_configs"] for target in group["targets"]]
        self.assertEqual(targets, ["api:9000"])
        self.assertIn("9000", " ".join(arguments_of("EXPOSE")))

    def test_api_publishes_9000(self) -> None:
        """The API is published on port 9000 of the host, as the README's curl session uses."""
        self.assertIn("9000:9000", [str(port) for port in self.services["api"]["ports"]])

    def test_api_builds_this_repository(self) -> None:
        """The API image is built from the repository root with docker/Dockerfile."""
        build = self.services["api"]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        self.assertEqual(context, ROOT)
        self.assertTrue((context / build["dockerfile"]).samefile(DOCKERFILE))

    def test_api_waits_for_a_healthy_database(self) -> None:
        """The API starts only once mongo passes its health check."""
        self.assertEqual(
            self.services["api"]["depends_on"], {"mongo": {"condition": "service_healthy"}}
        )

    def test_api_environment(self) -> None:
        """The API reaches the mongo service by name, and the seal key must come from the host:
        compose refuses to start without it, and no key is written in the file."""
        environment = self.services["api"]["environment"]
        self.assertEqual(environment["SQUAD_MONGO_URI"], "mongodb://mongo:27017")
        self.assertRegex(environment["SQUAD_SEAL_KEY"], r"^\$\{SQUAD_SEAL_KEY:\?[^}]+\}$")

    def test_mongo_is_the_official_image(self) -> None:
        """The database is the official mongo image (Docker Hub's library/mongo), version 7."""
        image = self.services["mongo"]["image"]
        self.assertRegex(image, r"^(?:docker\.io/)?(?:library/)?mongo:7(?:[.\d]*)$")

    def test_mongo_has_a_health_check(self) -> None:
        """mongo's health check pings the server with mongosh, so depends_on can wait on it."""
        test = self.services["mongo"]["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD")
        self.assertEqual(test[1], "mongosh")
        self.assertIn("ping", " ".join(test))

    def test_named_volume_for_the_data(self) -> None:
        """The database files live in the named volume mongo-data, declared at the top level."""
        self.assertIn("mongo-data:/data/db", self.services["mongo"]["volumes"])
        self.assertIn("mongo-data", self.compose["volumes"])

    def test_database_is_not_published(self) -> None:
        """Only the API is reachable from the host: the database port stays inside."""
        self.assertNotIn("ports", self.services["mongo"])


class DockerfileTests(SynchronousTestCase):
    def test_base_image(self) -> None:
        """The image starts from the slim Python 3.11 image."""
        self.assertEqual(instructions()[0], ("FROM", "python:3.11-slim"))

    def test_runs_as_a_user_that_is_not_root(self) -> None:
        """The last USER, the one the service runs as, is neither root nor uid 0."""
        users = arguments_of("USER")
        self.assertTrue(users, "no USER instruction: the service would run as root")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0", ""))
        index = [name for name, _ in instructions()].index("CMD")
        user_index = max(i for i, (name, _) in enumerate(instructions()) if name == "USER")
        self.assertLess(user_index, index)

    def test_health_check_gets_health(self) -> None:
        """HEALTHCHECK asks GET /health on port 9000 with Python (the slim image has no curl)."""
        (healthcheck,) = arguments_of("HEALTHCHECK")
        command = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
        self.assertEqual(command[0], "python")
        self.assertIn("urllib", " ".join(command))
        self.assertIn("127.0.0.1:9000/health", " ".join(command))

    def test_exposes_9000(self) -> None:
        """The image declares the port the API listens on."""
        exposed = {port for arguments in arguments_of("EXPOSE") for port in arguments.split()}
        self.assertIn("9000", exposed)

    def test_runs_squad_through_twistd(self) -> None:
        """CMD runs twistd in the foreground (no pid file) with the squad plugin on tcp:9000."""
        (cmd,) = arguments_of("CMD")
        command = exec_form(cmd)
        self.assertEqual(command[0], "twistd")
        self.assertIn("--nodaemon", command[: command.index("squad")])
        self.assertIn("--pidfile=", command[: command.index("squad")])
        port = command[command.index("--port") + 1]
        self.assertEqual(port.split(":")[:2], ["tcp", "9000"])

    def test_installs_the_project(self) -> None:
        """The project is installed with pip, without keeping pip's cache in the image."""
        runs = " ".join(arguments_of("RUN"))
        self.assertRegex(runs, r"pip install --no-cache-dir \.(?:\s|$)")

    def test_no_secret_in_the_image(self) -> None:
        """The seal key is never set in the image: it comes from the environment at run time."""
        for name in ("ENV", "ARG"):
            for arguments in arguments_of(name):
                self.assertNotIn("SQUAD_SEAL_KEY", arguments)

    def test_copied_files_exist_and_are_sent(self) -> None:
        """Every COPY source exists in the repository and survives the Dockerfile's ignore file,
        so the build does not fail on a renamed or ignored file."""
        for arguments in arguments_of("COPY"):
            *sources, _ = arguments.split()
            for source in sources:
                self.assertTrue((ROOT / source).exists(), source)
                self.assertFalse(ignored(source), source)

    def test_ignore_file_keeps_local_state_out(self) -> None:
        """The virtualenv, the database files and the seal key under var/ never reach the
        builder."""
        for path in (".venv/bin/python", "var/db/data", "var/seal.key", ".git/config"):
            self.assertTrue(ignored(path), path)
