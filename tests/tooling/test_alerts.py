"""docker/prometheus/: the alert rules are valid, pass their own unit tests, read only metrics
squad exports, and load and evaluate in a real Prometheus scraping a live squad.

promtool and prometheus come from Debian's prometheus package, which ./bin/test installs. Where
they are missing, the tests that need them are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import treq
import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from harness.probes import free_port
from tests.support import (
    ROOT,
    SquadProcess,
    database_uri,
    drop_database,
    eventually,
    request,
    sleep,
    stop_process_group,
)

PROMETHEUS = ROOT / "docker" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"

# PromQL's keywords and operators written as words: never metric names.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)


def debian_tool(name: str) -> str:
    """The path of ``name`` from Debian's prometheus package; skipped where it is missing,
    failed under CI, which must run these tests."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"needs {name}, from Debian's prometheus package: ./bin/test installs it"
    if os.environ.get("CI"):
        raise AssertionError(message)
    raise SkipTest(message)


def alert_expressions() -> dict[str, str]:
    """Each alert of alerts.yml by name, with its expression."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {
        rule["alert"]: rule["expr"]
        for group in document["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less the functions,
    keywords, label names (in braces and in by/on lists), strings and durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


class RuleFileTests(SynchronousTestCase):
    def test_promtool_checks_the_rules(self) -> None:
        """promtool finds alerts.yml valid: it parses, every expression is valid PromQL, and
        every template renders."""
        result = subprocess.run(
            [debian_tool("promtool"), "check", "rules", str(RULES)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(f"SUCCESS: {len(alert_expressions())} rules found", result.stdout)

    def test_promtool_unit_tests_pass(self) -> None:
        """promtool's unit tests of the rules (alerts.test.yml) pass."""
        result = subprocess.run(
            [debian_tool("promtool"), "test", "rules", str(RULE_TESTS)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=PROMETHEUS,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)

    def test_every_alert_is_tested_firing_and_quiet(self) -> None:
        """Each alert of alerts.yml has unit tests in alerts.test.yml that expect it to fire
        and that expect it to stay quiet."""
        tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
        firing: set[str] = set()
        quiet: set[str] = set()
        for test in tests["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
        self.assertEqual(firing, set(alert_expressions()))
        self.assertEqual(quiet, set(alert_expressions()))

    def test_every_alert_has_severity_text_and_a_runbook(self) -> None:
        """Every alert waits a while before firing, has a severity, a summary, a description
        and a runbook link to its own heading in docs/operations.md."""
        document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
        runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
        headings = {
            line.lstrip("#").strip().lower() for line in runbook.splitlines() if line[:1] == "#"
        }
        for group in document["groups"]:
            for rule in group["rules"]:
                name = rule["alert"]
                self.assertRegex(rule["for"], r"^\d+[smh]$", name)
                self.assertIn(rule["labels"]["severity"], {"warning", "critical"}, name)
                self.assertTrue(rule["annotations"]["summary"], name)
                self.assertTrue(rule["annotations"]["description"], name)
                self.assertEqual(
                    rule["annotations"]["runbook_url"], f"docs/operations.md#{name.lower()}"
                )
                self.assertIn(name.lower(), headings)

    def test_metric_names_of_an_expression(self) -> None:
        """The names a rule reads are told apart from functions, keywords, label names and
        values, durations and numbers."""
        expression = """
            sum by (job, instance) (rate(a_total{status=~"5..", code!="b_c"}[5m] offset 1m))
            / on(instance) group_left(x) histogram_quantile(0.99, b_bucket) > bool 3 * 3600
            or c_seconds unless ignoring(le) d:recorded + 1e3 and inf
        """
        self.assertEqual(
            metric_names(expression), {"a_total", "b_bucket", "c_seconds", "d:recorded"}
        )


async def scrape(url: str) -> set[str]:
    """The sample names (``_total``, ``_bucket``, ... included) of GET ``url``/metrics."""
    answer = await request("GET", url + "/metrics")
    assert answer.code == 200, answer.code
    families = text_string_to_metric_families(answer.body.decode())
    return {sample.name for family in families for sample in family.samples}


async def scrape_value(url: str, name: str) -> float:
    answer = await request("GET", url + "/metrics")
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"{name} is not exported")


class LiveSquadTests(TestCase):
    timeout = 90

    async def start_squad(self) -> SquadProcess:
        """Two workers on a database of the test's own, with a little traffic: sign-ups, and
        one refused so that the error counter has a series."""
        uri = database_uri()
        database = f"squad_alerts_{uuid.uuid4().hex[:8]}"
        self.addCleanup(drop_database, uri, database)
        key = os.path.abspath(self.mktemp() + ".key")
        squad = SquadProcess(
            self, uri, database, key, "--workers", "2", "--slow-min", "0.1", "--slow-max", "0.2"
        )
        await squad.ready()
        await squad.post_many(5)
        refused = await request("POST", squad.url + "/users", "not an object")
        self.assertEqual(refused.code, 400)
        await sleep(1.5)  # gauges are sampled once a second
        return squad

    async def test_every_metric_a_rule_reads_is_exported(self) -> None:
        """Each metric name an alert's expression reads is in a live squad's GET /metrics,
        except `up`, which Prometheus itself records for every scrape."""
        squad = await self.start_squad()
        exported = await scrape(squad.url)
        read = {name: metric_names(expression) for name, expression in alert_expressions().items()}
        self.assertEqual(read["SquadInstanceDown"], {"up"})
        for alert, names in read.items():
            self.assertTrue(names, alert)
            for name in names - {"up"}:
                self.assertIn(name, exported, f"{alert} reads {name}, which squad does not export")

    async def test_worker_restarts_and_slow_step_limit_are_exported(self) -> None:
        """squad_worker_restarts_total is 0 from the start and counts a worker the supervisor
        restarted; squad_slow_step_max_seconds is --slow-max."""
        squad = await self.start_squad()
        self.assertEqual(await scrape_value(squad.url, "squad_slow_step_max_seconds"), 0.2)
        self.assertEqual(await scrape_value(squad.url, "squad_worker_restarts_total"), 0)
        children = Path(f"/proc/{squad.pid}/task/{squad.pid}/children").read_text().split()
        self.assertEqual(len(children), 2, children)
        os.kill(int(children[0]), signal.SIGKILL)

        async def counted() -> bool:
            return await scrape_value(squad.url, "squad_worker_restarts_total") == 1

        await eventually(counted, 20, "the restart counted")
        self.assertEqual(await scrape_value(squad.url, "squad_slow_step_max_seconds"), 0.2)

    async def test_a_real_prometheus_loads_and_evaluates_every_rule(self) -> None:
        """Prometheus (Debian's build of the version compose pins) scraping a live squad loads
        every rule of alerts.yml and evaluates each, on squad's series, with no error."""
        binary = debian_tool("prometheus")
        squad = await self.start_squad()
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        configuration = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "squad", "static_configs": [{"targets": [f"127.0.0.1:{squad.port}"]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(configuration), encoding="utf-8")
        port = free_port()
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.addCleanup(stop_process_group, process)
        api = f"http://127.0.0.1:{port}/api/v1"

        async def get(path: str) -> Any:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{log_path.read_text()[-2000:]}")
            answer = await treq.get(api + path, persistent=False, timeout=5)
            return (await answer.json())["data"]

        async def squad_scraped() -> bool:
            targets = (await get("/targets"))["activeTargets"]
            return any(t["labels"]["job"] == "squad" and t["health"] == "up" for t in targets)

        await eventually(squad_scraped, 30, "prometheus scraping squad")
        scraped_at = time.time()
        rules: list[dict[str, Any]] = []

        async def evaluated_since() -> bool:
            nonlocal rules
            rules = [rule for group in (await get("/rules"))["groups"] for rule in group["rules"]]
            return len(rules) == len(alert_expressions()) and all(
                _timestamp(rule["lastEvaluation"]) > scraped_at for rule in rules
            )

        await eventually(evaluated_since, 20, "every rule evaluated after the first scrape")
        self.assertEqual({rule["name"] for rule in rules}, set(alert_expressions()))
        for rule in rules:
            self.assertEqual((rule["health"], rule.get("lastError", "")), ("ok", ""), rule)


def _timestamp(text: str) -> float:
    """Seconds since the epoch of one of Prometheus's RFC 3339 times in UTC."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (fraction or "0"))
