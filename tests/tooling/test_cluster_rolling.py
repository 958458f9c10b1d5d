"""bin/cluster's rolling restart: the order of its steps, where it stops when one fails, and the
nginx configurations it rewrites and reloads.

The sequence (``cluster.rolling``) runs against a fake set of instances and a fake clock. The
nginx part runs a real nginx (skipped where there is none) over two stand-in instances, small
HTTP servers that name their port.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from cluster.nginx import balancer_config, edge_config
from cluster.parts import Child
from cluster.processes import Cluster
from cluster.rolling import Outcome, RollingRestart, StepFailed
from harness.probes import free_port


@dataclass
class FakeInstances:
    """Instances that record every step in ``steps``; ``fail`` makes one step of one instance
    raise, ``killed`` makes an instance ignore SIGTERM. Each step takes ``STEP`` seconds of
    the fake clock."""

    names: list[str]
    steps: list[str] = field(default_factory=list)
    fail: tuple[str, int] | None = None
    killed: set[int] = field(default_factory=set)
    now: float = 0.0

    STEP = 0.5

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.steps.append(f"settle {seconds:g}")

    def _step(self, what: str, index: int) -> None:
        self.now += self.STEP
        self.steps.append(f"{what} {index}")
        if self.fail == (what, index):
            raise StepFailed(f"{what} failed")

    def instance_names(self) -> list[str]:
        return list(self.names)

    def describe(self, index: int, replacement: int | None = None) -> str:
        return self.names[index] if replacement is None else f"{self.names[index]}'"

    def start_replacement(self, index: int) -> int:
        self._step("start", index)
        return index

    def wait_ready(self, replacement: int, limit: float) -> None:
        self._step("ready", replacement)

    def discard(self, replacement: int) -> None:
        self._step("discard", replacement)

    def route_to(self, index: int, replacement: int) -> str:
        self._step("route", index)
        return f"workers before {index}"

    def wait_drained(self, drain: str, limit: float) -> None:
        self._step("drained", int(drain.rsplit(" ", 1)[1]))

    def retire(self, index: int, replacement: int, grace: float) -> bool:
        self._step("retire", index)
        return index not in self.killed

    def wait_taken_over(self, index: int, limit: float) -> None:
        self._step("takeover", index)


def restart(fake: FakeInstances) -> tuple[Outcome, list[str]]:
    lines: list[str] = []
    outcome = RollingRestart(fake, fake.clock, fake.sleep, lines.append).run()
    return outcome, lines


class SequenceTests(SynchronousTestCase):
    """One instance at a time: ready replacement, nginx away from the old one, drained, stop."""

    def test_every_instance_in_order(self) -> None:
        """Each instance's replacement is ready and routed to, and nginx's old workers are
        gone, before the old instance is stopped; its work is taken over and the cluster
        settles before the next one starts."""
        fake = FakeInstances(["a", "b", "c"])
        outcome, lines = restart(fake)
        steps = ["start", "ready", "route", "drained", "retire", "takeover"]
        one = [[f"{s} {i}" for s in steps] for i in range(3)]
        self.assertEqual(fake.steps, [*one[0], "settle 5", *one[1], "settle 5", *one[2]])
        self.assertEqual(outcome, Outcome(3, 3, 19.0))
        self.assertTrue(outcome.complete)
        self.assertEqual(lines[-1], "rolling restart done: 3 instances replaced in 19.0 s")

    def test_each_step_is_timed(self) -> None:
        """The log gives how long each step took, by the clock it is given."""
        _, lines = restart(FakeInstances(["a"]))
        self.assertEqual(
            lines,
            [
                "rolling restart of 1 instances, one at a time",
                "a: starting its replacement a'",
                "a' ready in 1.0 s",
                "nginx reloaded in 0.5 s: a' in, a out",
                "a drained: nginx's old workers exited in 0.5 s",
                "a stopped (SIGTERM) in 0.5 s",
                "a's work taken over by the others in 0.5 s; replaced in 3.0 s",
                "rolling restart done: 1 instances replaced in 3.0 s",
            ],
        )

    def test_replacement_not_ready_stops_the_restart(self) -> None:
        """A replacement that does not become ready is discarded; its instance and those after
        it are not touched, and the log says so."""
        fake = FakeInstances(["a", "b", "c"], fail=("ready", 1))
        outcome, lines = restart(fake)
        self.assertEqual(
            fake.steps[6:], ["settle 5", "start 1", "ready 1", "discard 1"], "nothing after it"
        )
        self.assertEqual((outcome.replaced, outcome.complete), (1, False))
        self.assertEqual(
            lines[-1],
            "rolling restart stopped after 1 of 3 instances (9.5 s): the replacement b' did "
            "not become ready: ready failed; b and the instances after it keep serving",
        )

    def test_nginx_refusing_stops_the_restart(self) -> None:
        """When nginx refuses the rewritten configuration the replacement is discarded and the
        old instance is not stopped."""
        fake = FakeInstances(["a", "b"], fail=("route", 0))
        outcome, _ = restart(fake)
        self.assertEqual(fake.steps, ["start 0", "ready 0", "route 0", "discard 0"])
        self.assertEqual(outcome.error, "nginx kept its configuration: route failed")

    def test_undrained_instance_is_not_stopped(self) -> None:
        """An old instance nginx may still hold a connection to is left running: the restart
        stops before the SIGTERM that could fail a request."""
        fake = FakeInstances(["a", "b"], fail=("drained", 0))
        outcome, _ = restart(fake)
        self.assertNotIn("retire 0", fake.steps)
        self.assertEqual(fake.steps[-1], "drained 0")
        self.assertEqual(outcome.error, "a not drained: drained failed")

    def test_work_not_taken_over_stops_the_restart(self) -> None:
        """When a stopped instance's work is not taken over, no other instance is stopped: its
        replacement serves, and the instances after it keep serving."""
        fake = FakeInstances(["a", "b", "c"], fail=("takeover", 0))
        outcome, lines = restart(fake)
        self.assertEqual(fake.steps[-1], "takeover 0")
        self.assertEqual((outcome.replaced, outcome.complete), (1, False))
        self.assertEqual(
            lines[-1],
            "rolling restart stopped after 1 of 3 instances (3.0 s): a's work not taken over: "
            "takeover failed; its replacement and the instances after it keep serving",
        )

    def test_an_instance_that_needed_sigkill_is_said(self) -> None:
        """An old instance still running after the grace period is named as SIGKILLed."""
        fake = FakeInstances(["a"], killed={0})
        _, lines = restart(fake)
        self.assertIn("a SIGKILLed after 30 s in 0.5 s", lines)


class ConfigurationTests(SynchronousTestCase):
    """The two nginx configurations bin/cluster writes."""

    def test_balancer_lists_exactly_the_instances(self) -> None:
        """The balancer's upstream block has a server line for each port given, and no other:
        rewriting it without an instance takes that instance out."""
        text = balancer_config(Path("/x/b.sock"), [4001, 4003], Path("/x"))
        servers = [line.split()[1] for line in text.splitlines() if "server 127" in line]
        self.assertEqual(servers, ["127.0.0.1:4001", "127.0.0.1:4003"])
        self.assertIn("listen unix:/x/b.sock", text)
        self.assertIn("keepalive 64;", text)

    def test_edge_keeps_no_connection_to_the_balancer(self) -> None:
        """The edge's upstream has no keep-alive (a balancer reload then finds no idle
        connection to close under a request) and retries nothing."""
        text = edge_config(9000, Path("/x/b.sock"), Path("/e"))
        upstream = text[text.index("upstream balancer") : text.index("server {")]
        self.assertNotIn("keepalive", upstream)
        self.assertIn("server unix:/x/b.sock;", upstream)
        self.assertIn("proxy_next_upstream off;", text)
        self.assertIn("listen 127.0.0.1:9000", text)


class PortNamer(http.server.BaseHTTPRequestHandler):
    """A stand-in instance: answers every request 204 with its own port in a header."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(204)
        self.send_header("X-Port", str(self.connection.getsockname()[1]))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class RealNginxTests(SynchronousTestCase):
    """A rolling step's nginx half against a real nginx (the edge and the balancer)."""

    def setUp(self) -> None:
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            raise SkipTest("needs nginx (bin/cluster installs nginx-light)")
        self.home = Path(tempfile.mkdtemp(prefix="squad-rolling-test-"))
        self.addCleanup(shutil.rmtree, self.home, True)
        (self.home / "logs").mkdir()
        self.home.chmod(0o755)
        self.ports = [self.stand_in() for _ in range(3)]
        self.cluster = Cluster(self.home, 2, free_port())
        self.cluster.instance_ports = self.ports[:2]
        self.addCleanup(self.cluster.stop)
        self.cluster.start_nginx()

    def stand_in(self) -> int:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PortNamer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return int(server.server_address[1])

    def answering(self, requests: int = 20) -> set[int]:
        ports = set()
        for _ in range(requests):
            with urllib.request.urlopen(self.cluster.url + "/health", timeout=5) as answer:
                ports.add(int(answer.headers["X-Port"]))
        return ports

    def test_route_to_drains_the_old_instance(self) -> None:
        """After route_to and wait_drained, nginx's workers from before the reload are gone and
        requests reach the replacement and the untouched instance, never the old one."""
        self.assertEqual(self.answering(), set(self.ports[:2]))
        sleeper = subprocess.Popen(["sleep", "60"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        replacement = Child("stand-in", sleeper, self.home / "logs" / "x.log", port=self.ports[2])
        before = self.cluster.nginx.workers()
        self.assertTrue(before)
        drain = self.cluster.route_to(0, replacement)
        self.assertEqual(drain, before)
        started = time.monotonic()
        self.cluster.wait_drained(drain, 10)
        self.assertLess(time.monotonic() - started, 10)
        self.assertFalse(before & self.cluster.nginx.workers())
        self.assertEqual(self.answering(), {self.ports[1], self.ports[2]})
        self.assertEqual(self.cluster.instance_ports, [self.ports[2], self.ports[1]])

    def test_refused_configuration_leaves_nginx_alone(self) -> None:
        """A configuration nginx -t refuses raises StepFailed; the running nginx keeps its
        workers and its instances."""
        sleeper = subprocess.Popen(["sleep", "60"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        # Port 0 is no address nginx accepts in an upstream block.
        replacement = Child("stand-in", sleeper, self.home / "logs" / "x.log", port=0)
        before = self.cluster.nginx.workers()
        with self.assertRaises(StepFailed):
            self.cluster.route_to(0, replacement)
        self.assertEqual(self.cluster.nginx.workers(), before)
        self.assertEqual(self.answering(), set(self.ports[:2]))
