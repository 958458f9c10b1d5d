"""The cluster on one machine: its parts started in order, each a process group of its own, and
stopped in the reverse order; and the steps a rolling restart takes on them.

PostgreSQL (``cluster.postgres``), FerretDB on it (``cluster.ferretdb``), N squad instances
(``cluster.instances``) and nginx in front (``cluster.nginx``). Nothing here needs a daemon
manager: every process is a child in its own session, stopped (SIGTERM or PostgreSQL's
fast-shutdown SIGINT, then SIGKILL) in the reverse order of its start.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.ferretdb import connections, start_ferretdb
from cluster.instances import database_of, start_instance, wait_instance, wait_taken_over
from cluster.nginx import Nginx
from cluster.parts import Child, ClusterError, RunAs, say
from cluster.postgres import Postgres
from cluster.rolling import TAKEOVER_LIMIT, Outcome, RollingRestart, StepFailed
from harness.groups import spawn
from harness.probes import port_open
from harness.processes import group_members


@dataclass
class Cluster:
    """Everything ``bin/cluster`` runs, under ``home`` (``var/cluster/`` by default)."""

    home: Path
    instances: int
    http_port: int
    workers: int = 1
    squad_args: list[str] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    squads: list[Child] = field(default_factory=list)
    ferretdb_port: int = 0
    instance_ports: list[int] = field(default_factory=list)
    # How long a rolling restart waits for a stopped instance's work to be taken over.
    takeover_limit: float = TAKEOVER_LIMIT
    # The pids of each slot's instance just retired, until its work is taken over.
    _retired: dict[int, list[int]] = field(default_factory=dict)
    # Replacements started so far: each has a name and log of its own (squad-1.2, ...).
    generation: int = 1
    postgres: Postgres = field(init=False)
    nginx: Nginx = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = Postgres(self.home, self.logs)
        self.nginx = Nginx(self.home, self.http_port)

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.ferretdb_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def database(self) -> str:
        """The database squad uses: its default, or the last ``--database`` after --."""
        return database_of(self.squad_args)

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        run_as: RunAs | None = None,
        stop_signal: int = signal.SIGTERM,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int = 0,
        after: Child | None = None,
    ) -> Child:
        """Start a part, its log in ``logs/NAME.log`` (see ``cluster.parts.Spawn``)."""
        log_path = self.logs / f"{name}.log"
        process = spawn(
            argv,
            log_path,
            env=env,
            cwd=cwd,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
        )
        child = Child(name, process, log_path, stop_signal, port)
        # Beside the instance it replaces: stop() stops neighbouring instances together.
        where = len(self.children) if after is None else self.children.index(after) + 1
        self.children.insert(where, child)
        self._note_groups()
        return child

    def _note_groups(self) -> None:
        # bin/cluster's exit trap kills these process groups if this program dies first.
        record = os.environ.get("SQUAD_CLUSTER_PGIDS")
        if record:
            live = "".join(f"{c.process.pid}\n" for c in self.children if c.alive)
            Path(record).write_text(live)

    # the parts, in the order they start -----------------------------------------------------

    def start_postgres(self) -> None:
        self.postgres.start(self.spawn, connections(self.instances, self.workers))

    def start_ferretdb(self) -> None:
        pool = connections(self.instances, self.workers)
        self.ferretdb_port = start_ferretdb(self.spawn, self.home, self.postgres.port, pool)

    def _start_instance(self, name: str, after: Child | None = None) -> Child:
        return start_instance(
            self.spawn, name, self.home, self.mongo_uri, self.workers, self.squad_args, after
        )

    def start_squads(self) -> None:
        for number in range(1, self.instances + 1):
            child = self._start_instance(f"squad-{number}")
            self.instance_ports.append(child.port)
            self.squads.append(child)
            # The first creates the shared seal key; the others must read it, not race it.
            if number == 1:
                wait_instance(child, 60)
        for child in self.squads[1:]:
            wait_instance(child, 60)
        say(f"{self.instances} squad instances on ports {', '.join(map(str, self.instance_ports))}")

    def start_nginx(self) -> None:
        self.nginx.start(self.spawn, self.instance_ports)
        say(f"nginx on {self.url} balancing over the {self.instances} instances")

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # PostgreSQL's account must reach its data folder inside (a temporary folder is 0700).
        self.home.chmod(0o755)
        self.logs.mkdir(exist_ok=True)
        if port_open(self.http_port):
            raise ClusterError(
                f"127.0.0.1:{self.http_port} is already in use (bin/cluster --port P picks another)"
            )
        self.start_postgres()
        self.start_ferretdb()
        self.start_squads()
        self.start_nginx()

    def stop(self) -> None:
        """Stop everything started, last first (safe to call more than once). The instances
        stop together: each may take its grace period handing work back."""
        while self.children:
            child = self.children.pop()
            together = [child]
            while child in self.squads and self.children and self.children[-1] in self.squads:
                together.append(self.children.pop())
            for one in together:
                if one.alive:
                    one.kill(one.stop_signal)
            for one in together:
                one.stop(signalled=True)
            self._note_groups()

    def dead(self) -> list[Child]:
        return [child for child in self.children if not child.alive]

    # the rolling restart's steps (cluster.rolling.Instances) ---------------------------------

    def instance_names(self) -> list[str]:
        return [child.name for child in self.squads]

    def describe(self, index: int, replacement: Child | None = None) -> str:
        child = self.squads[index] if replacement is None else replacement
        return f"{child.name} (pid {child.process.pid}, port {child.port})"

    def start_replacement(self, index: int) -> Child:
        self.generation += 1
        return self._start_instance(f"squad-{index + 1}.{self.generation}", self.squads[index])

    def wait_ready(self, replacement: Child, limit: float) -> None:
        try:
            wait_instance(replacement, limit)
        except ClusterError as error:
            raise StepFailed(str(error)) from None

    def discard(self, replacement: Child) -> None:
        replacement.stop()
        self.children.remove(replacement)
        self._note_groups()

    def route_to(self, index: int, replacement: Child) -> frozenset[tuple[int, float]]:
        ports = list(self.instance_ports)
        ports[index] = replacement.port
        drain = self.nginx.reload(ports)
        self.instance_ports = ports
        return drain

    def wait_drained(self, drain: frozenset[tuple[int, float]], limit: float) -> None:
        self.nginx.wait_drained(drain, limit)

    def retire(self, index: int, replacement: Child, grace: float) -> bool:
        old = self.squads[index]
        # Its processes (with --workers, the workers hold the work): read before they exit.
        self._retired[index] = sorted(group_members(old.process.pid))
        by_itself = old.stop(grace)
        self.children.remove(old)
        self.squads[index] = replacement
        self._note_groups()
        return by_itself

    def wait_taken_over(self, index: int, limit: float) -> None:
        pids = self._retired.pop(index, [])
        wait_taken_over(self.mongo_uri, self.database, pids, limit)

    def rolling_restart(self) -> Outcome:
        """Replace every instance, one at a time, with no request lost (``cluster.rolling``)."""
        return RollingRestart(
            self, time.monotonic, time.sleep, say, takeover_limit=self.takeover_limit
        ).run()
