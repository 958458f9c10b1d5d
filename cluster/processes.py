"""The parts of a squad cluster on one machine, each a process group we start, watch and stop.

PostgreSQL (Debian's binaries, a private data folder, 127.0.0.1 only), FerretDB on its
PostgreSQL backend (the Mongo wire protocol for squad), N ``twistd -n squad`` instances on
ports of their own, and nginx in front. Nothing here needs a daemon manager: every process is
a child in its own session, stopped (SIGTERM or PostgreSQL's fast-shutdown SIGINT, then
SIGKILL) in the reverse order of its start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pymongo
import pymongo.errors

from cluster.rolling import TAKEOVER_LIMIT, Outcome, RollingRestart, StepFailed

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_BIN = Path(os.environ.get("SQUAD_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
FERRETDB = Path(os.environ.get("SQUAD_FERRETDB", str(ROOT / ".tools" / "bin" / "ferretdb")))
# PostgreSQL refuses to run as root: as root we run it as this unprivileged account.
POSTGRES_ACCOUNTS = ("postgres", "squad-postgres")
DATABASE_USER = "squad"
# FerretDB keeps every Mongo database in this one PostgreSQL database.
POSTGRES_DATABASE = "ferretdb"

# FerretDB v1.24.2's PostgreSQL backend finds a document by _id with
# ``_jsonb->'_id' @> '"<id>"'``, which its own unique btree index on ``_jsonb->'_id'`` cannot
# serve (https://github.com/FerretDB/FerretDB/issues/4646): every find, update and delete by
# _id scans the whole table. A GIN index on the same expression does serve ``@>``. An event
# trigger adds one to every table FerretDB creates (and the DO block to tables that already
# exist). Measured in docs/database.md.
ID_INDEX_SQL = r"""
CREATE OR REPLACE FUNCTION squad_add_id_gin_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN
        SELECT c.objid::regclass AS tbl, c.objid AS oid, k.relname AS name
        FROM pg_event_trigger_ddl_commands() AS c JOIN pg_class k ON k.oid = c.objid
        WHERE c.command_tag = 'CREATE TABLE' AND c.object_type = 'table'
    LOOP
        IF EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = created.oid AND attname = '_jsonb' AND NOT attisdropped) THEN
            EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s '
                           'USING gin ((_jsonb->''_id'') jsonb_path_ops)',
                           left(created.name, 50) || '_id_gin', created.tbl);
        END IF;
    END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS squad_id_gin_index;
CREATE EVENT TRIGGER squad_id_gin_index ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION squad_add_id_gin_index();
DO $$
DECLARE
    existing record;
BEGIN
    FOR existing IN
        SELECT a.attrelid::regclass AS tbl, k.relname AS name
        FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = k.relnamespace
        WHERE a.attname = '_jsonb' AND k.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s '
                       'USING gin ((_jsonb->''_id'') jsonb_path_ops)',
                       left(existing.name, 50) || '_id_gin', existing.tbl);
    END LOOP;
END $$;
"""


def say(message: str) -> None:
    print(f"squad: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class ClusterError(Exception):
    """Something the person running the cluster must fix; the message says what."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


@dataclass
class Account:
    """Who PostgreSQL runs as: ourselves, or (as root) an unprivileged account."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_postgres(cls) -> Account:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            return cls(me.pw_name, me.pw_uid, me.pw_gid)
        for name in POSTGRES_ACCOUNTS:
            with contextlib.suppress(KeyError):
                found = pwd.getpwnam(name)
                return cls(name, found.pw_uid, found.pw_gid)
        name = POSTGRES_ACCOUNTS[-1]
        say(f"creating the unprivileged account {name} to run PostgreSQL (it refuses root)")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        found = pwd.getpwnam(name)
        return cls(name, found.pw_uid, found.pw_gid)

    def owns(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
            for parent, folders, files in os.walk(path):
                for name in folders + files:
                    os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)


@dataclass
class Child:
    """One started process (the leader of its own process group) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    # A squad instance's HTTP port (0 for the other parts).
    port: int = 0

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, number: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, number)

    def stop(self, grace: float = 10.0, *, signalled: bool = False) -> bool:
        """Stop it (its stop signal unless ``signalled`` already, then SIGKILL after ``grace``
        s); True when it exited before the SIGKILL."""
        by_itself = True
        if self.alive:
            if not signalled:
                # Once: a second SIGTERM makes twistd try to stop a reactor already stopping.
                self.kill(self.stop_signal)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                by_itself = False
        self.kill(signal.SIGKILL)  # the group too: no worker outlives its parent
        self.process.wait()
        return by_itself

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""


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
    postgres_port: int = 0
    ferretdb_port: int = 0
    instance_ports: list[int] = field(default_factory=list)
    nginx: Child | None = None
    # How long a rolling restart waits for a stopped instance's work to be taken over.
    takeover_limit: float = TAKEOVER_LIMIT
    # The pids of each slot's instance just retired, until its work is taken over.
    _retired: dict[int, list[int]] = field(default_factory=dict)
    # Replacements started so far: each has a name and log of its own (squad-1.2, ...).
    generation: int = 1

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.ferretdb_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        account: Account | None = None,
        stop_signal: int = signal.SIGTERM,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int = 0,
        after: Child | None = None,
    ) -> Child:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as log:
            process = self._popen(argv, log, account, env, cwd)
        child = Child(name, process, log_path, stop_signal, port)
        # Beside the instance it replaces: stop() stops neighbouring instances together.
        where = len(self.children) if after is None else self.children.index(after) + 1
        self.children.insert(where, child)
        self._note_groups()
        return child

    @staticmethod
    def _popen(
        argv: list[str],
        log: IO[bytes],
        account: Account | None,
        env: dict[str, str] | None,
        cwd: Path | None,
    ) -> subprocess.Popen[bytes]:
        as_other = account is not None and os.geteuid() == 0
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
            user=account.uid if as_other and account else None,
            group=account.gid if as_other and account else None,
            extra_groups=[] if as_other else None,
        )

    def _note_groups(self) -> None:
        # bin/cluster's exit trap kills these process groups if this program dies first.
        record = os.environ.get("SQUAD_CLUSTER_PGIDS")
        if record:
            live = "".join(f"{c.process.pid}\n" for c in self.children if c.alive)
            Path(record).write_text(live)

    def _wait(self, what: str, ready: Callable[[], bool], child: Child, limit: float) -> None:
        started = time.monotonic()
        while not ready():
            if not child.alive:
                raise ClusterError(f"{what} exited at start:\n{child.log_tail()}")
            if time.monotonic() - started > limit:
                raise ClusterError(f"{what} not ready after {limit:g} s:\n{child.log_tail()}")
            time.sleep(0.1)

    # PostgreSQL --------------------------------------------------------------------------

    def start_postgres(self) -> None:
        account = Account.for_postgres()
        data = self.home / "postgres"
        sockets = self.home / "postgres-socket"
        sockets.mkdir(exist_ok=True)
        account.owns(sockets)
        with open(self.logs / "initdb.log", "ab") as log:
            reachable = self._popen(
                ["test", "-w", str(sockets)], log, account, None, self.home
            ).wait()
        if reachable != 0:
            raise ClusterError(
                f"PostgreSQL runs as {account.name}, which cannot reach {self.home} (a parent "
                "folder is private, /root for example): bin/cluster --data /var/tmp/squad-cluster"
            )
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(mode=0o700)
            account.owns(data)
            say(f"initialising PostgreSQL in {data} (as {account.name})")
            with open(self.logs / "initdb.log", "ab") as log:
                done = self._popen(
                    [
                        str(POSTGRES_BIN / "initdb"),
                        "--pgdata",
                        str(data),
                        "--username",
                        DATABASE_USER,
                        # Only 127.0.0.1 and a private socket folder can reach it.
                        "--auth",
                        "trust",
                        "--encoding",
                        "UTF8",
                        "--no-locale",
                    ],
                    log,
                    account,
                    None,
                    self.home,
                ).wait()
            if done != 0:
                raise ClusterError(f"initdb failed; see {self.logs / 'initdb.log'}")
        self.postgres_port = free_port()
        child = self._spawn(
            "postgres",
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.postgres_port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                # FerretDB's pool (see ferretdb_connections) plus psql and a margin.
                "-c",
                f"max_connections={self.ferretdb_connections + 30}",
                "-c",
                "shared_buffers=256MB",
                # Durability stays PostgreSQL's default (synchronous_commit=on, fsync=on): an
                # acknowledged sign-up survives a crash of the database or of the machine.
                "-c",
                "log_min_messages=warning",
            ],
            account=account,
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for clients to leave.
            stop_signal=signal.SIGINT,
            cwd=self.home,
        )
        self._wait("PostgreSQL", lambda: self._psql("SELECT 1", quiet=True), child, 60)
        say(f"PostgreSQL on 127.0.0.1:{self.postgres_port} (data in {data})")
        if not self._psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DATABASE}'", expect="1"
        ):
            self._psql(f"CREATE DATABASE {POSTGRES_DATABASE} ENCODING 'UTF8' TEMPLATE template0")
        if not self._psql(ID_INDEX_SQL, database=POSTGRES_DATABASE):
            raise ClusterError("could not install the _id index trigger (see above)")

    def _psql(
        self,
        sql: str,
        *,
        database: str = "postgres",
        quiet: bool = False,
        expect: str | None = None,
    ) -> bool:
        result = subprocess.run(
            [
                str(POSTGRES_BIN / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                "--host=127.0.0.1",
                f"--port={self.postgres_port}",
                f"--username={DATABASE_USER}",
                f"--dbname={database}",
            ],
            input=sql.encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            if not quiet:
                sys.stderr.write(result.stderr.decode(errors="replace"))
            return False
        return expect is None or result.stdout.decode().strip() == expect

    # FerretDB ----------------------------------------------------------------------------

    @property
    def ferretdb_connections(self) -> int:
        """PostgreSQL connections FerretDB may open.

        FerretDB v1.24.2 holds one SQL connection per update of an update message until the
        whole message is done (a ``defer`` in its loop), and squad sends bulk writes in
        messages of 16 operations on each of its 9 database connections per process (8 for
        requests, 1 for background writes). With FerretDB's default pool of 50, three
        instances writing at once took every connection and then waited for more, for ever:
        a deadlock measured in the first ``bin/cluster --check`` (every PostgreSQL session
        idle, every squad request timing out). So the pool covers the worst case, with one
        instance more than N: a rolling restart runs a replacement beside the one it
        replaces."""
        return 16 * 9 * (self.instances + 1) * self.workers + 20

    def start_ferretdb(self) -> None:
        state = self.home / "ferretdb"
        state.mkdir(exist_ok=True)
        self.ferretdb_port = free_port()
        child = self._spawn(
            "ferretdb",
            [
                str(FERRETDB),
                "--handler=postgresql",
                f"--postgresql-url=postgres://{DATABASE_USER}@127.0.0.1:{self.postgres_port}"
                f"/{POSTGRES_DATABASE}?pool_max_conns={self.ferretdb_connections}",
                f"--listen-addr=127.0.0.1:{self.ferretdb_port}",
                f"--state-dir={state}",
                f"--debug-addr=127.0.0.1:{free_port()}",
                "--telemetry=disable",
                "--log-level=ERROR",
            ],
        )
        self._wait("FerretDB", lambda: port_open(self.ferretdb_port), child, 30)
        say(f"FerretDB (PostgreSQL backend) on {self.mongo_uri}")

    # squad -------------------------------------------------------------------------------

    def _spawn_squad(self, name: str, after: Child | None = None) -> Child:
        twistd = Path(sys.executable).parent / "twistd"
        key = self.home / "seal.key"  # shared: any instance may hash another's passwords
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SQUAD_")}
        if "SQUAD_SEAL_KEY" in os.environ:
            environment["SQUAD_SEAL_KEY"] = os.environ["SQUAD_SEAL_KEY"]
        port = free_port()
        return self._spawn(
            name,
            [
                str(twistd),
                "--pidfile=",
                "-n",
                "squad",
                "--port",
                f"tcp:{port}:interface=127.0.0.1",
                "--mongo-uri",
                self.mongo_uri,
                "--workers",
                str(self.workers),
                "--seal-key-file",
                str(key),
                "--allow-flush",
                *self.squad_args,
            ],
            env={**environment, "SQUAD_INSTANCE": f"{name}@127.0.0.1:{port}"},
            cwd=ROOT,
            port=port,
            after=after,
        )

    def start_squads(self) -> None:
        for number in range(1, self.instances + 1):
            child = self._spawn_squad(f"squad-{number}")
            self.instance_ports.append(child.port)
            self.squads.append(child)
            # The first creates the shared seal key; the others must read it, not race it.
            if number == 1:
                self.wait_instance(0)
        for index in range(1, self.instances):
            self.wait_instance(index)
        say(f"{self.instances} squad instances on ports {', '.join(map(str, self.instance_ports))}")

    def wait_instance(self, index: int, limit: float = 60) -> None:
        self._wait_ready(self.squads[index], limit)

    def _wait_ready(self, child: Child, limit: float) -> None:
        url = f"http://127.0.0.1:{child.port}/ready"
        self._wait(child.name, lambda: http_status(url) == 204, child, limit)

    # nginx -------------------------------------------------------------------------------
    #
    # Two nginx: the edge, on --port, which clients keep connections to and which is never
    # reloaded; and the balancer behind it, over the instances, which a rolling restart
    # reloads. A reloading nginx closes the idle keep-alive connections of its old workers, and
    # a client sending its next request on one just then gets no answer (4 failed POSTs in the
    # first rolling restart under load, with one nginx). The edge opens a new connection to the
    # balancer for each request (a Unix socket, no keep-alive), so the balancer's old workers
    # never hold an idle one: they answer what they hold and exit.

    @property
    def nginx_folder(self) -> Path:
        """The balancer's folder: its configuration, logs and ``retried.log``."""
        return self.home / "nginx"

    @property
    def edge_folder(self) -> Path:
        return self.home / "nginx-edge"

    @property
    def balancer_socket(self) -> Path:
        return self.nginx_folder / "balancer.sock"

    @staticmethod
    def _write_checked(folder: Path, text: str) -> Path:
        """Write ``folder/nginx.conf`` once ``nginx -t`` accepts ``text`` (the file in use is
        left alone when it does not)."""
        folder.mkdir(exist_ok=True)
        config = folder / "nginx.conf"
        candidate = folder / "nginx.conf.new"
        candidate.write_text(text)
        checked = subprocess.run(
            [_nginx(), "-t", "-q", "-p", str(folder), "-c", str(candidate)],
            capture_output=True,
            check=False,
        )
        if checked.returncode != 0:
            raise ClusterError(f"nginx refused its configuration:\n{checked.stderr.decode()}")
        candidate.replace(config)
        return config

    def _write_balancer_config(self, ports: list[int]) -> Path:
        folder = self.nginx_folder
        return self._write_checked(folder, balancer_config(self.balancer_socket, ports, folder))

    def start_nginx(self) -> None:
        folder = self.nginx_folder
        config = self._write_balancer_config(self.instance_ports)
        self.balancer_socket.unlink(missing_ok=True)  # left by a cluster that was killed
        balancer = self._spawn(
            "nginx-balancer",
            [_nginx(), "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
        )
        self.nginx = balancer
        self._wait("nginx (balancer)", self.balancer_socket.exists, balancer, 30)
        edge = self.edge_folder
        config = self._write_checked(edge, edge_config(self.http_port, self.balancer_socket, edge))
        child = self._spawn(
            "nginx", [_nginx(), "-p", str(edge), "-c", str(config), "-g", "daemon off;"]
        )
        self._wait("nginx", lambda: http_status(self.url + "/health") == 204, child, 30)
        say(f"nginx on {self.url} balancing over the {self.instances} instances")

    def nginx_workers(self) -> frozenset[tuple[int, int]]:
        """The balancer's worker processes now, as (pid, start time) so that a reused pid is
        no match."""
        if self.nginx is None:
            return frozenset()
        return frozenset(
            (pid, started)
            for pid, parent, _, started in _processes()
            if parent == self.nginx.process.pid
        )

    # the rolling restart (cluster.rolling.Instances) ---------------------------------------

    def instance_names(self) -> list[str]:
        return [child.name for child in self.squads]

    def describe(self, index: int, replacement: Child | None = None) -> str:
        child = self.squads[index] if replacement is None else replacement
        return f"{child.name} (pid {child.process.pid}, port {child.port})"

    def start_replacement(self, index: int) -> Child:
        self.generation += 1
        return self._spawn_squad(f"squad-{index + 1}.{self.generation}", after=self.squads[index])

    def wait_ready(self, replacement: Child, limit: float) -> None:
        try:
            self._wait_ready(replacement, limit)
        except ClusterError as error:
            raise StepFailed(str(error)) from None

    def discard(self, replacement: Child) -> None:
        replacement.stop()
        self.children.remove(replacement)
        self._note_groups()

    def route_to(self, index: int, replacement: Child) -> frozenset[tuple[int, int]]:
        if self.nginx is None or not self.nginx.alive:
            raise StepFailed("nginx is not running")
        ports = list(self.instance_ports)
        ports[index] = replacement.port
        try:
            self._write_balancer_config(ports)
        except ClusterError as error:
            raise StepFailed(str(error)) from None
        before = self.nginx_workers()
        # nginx -s reload sends the master this same signal.
        self.nginx.kill(signal.SIGHUP)
        self.instance_ports = ports
        return before

    def wait_drained(self, drain: frozenset[tuple[int, int]], limit: float) -> None:
        started = time.monotonic()
        while drain & self.nginx_workers():
            if time.monotonic() - started > limit:
                pids = ", ".join(str(pid) for pid, _ in sorted(drain & self.nginx_workers()))
                raise StepFailed(f"nginx's old workers ({pids}) still run after {limit:g} s")
            time.sleep(0.05)

    def retire(self, index: int, replacement: Child, grace: float) -> bool:
        old = self.squads[index]
        # Its processes (with --workers, the workers hold the work): read before they exit.
        self._retired[index] = [
            pid for pid, _, group, _ in _processes() if group == old.process.pid
        ]
        by_itself = old.stop(grace)
        self.children.remove(old)
        self.squads[index] = replacement
        self._note_groups()
        return by_itself

    def wait_taken_over(self, index: int, limit: float) -> None:
        pids = self._retired.pop(index, [])
        if not pids:
            return
        # A stopped process's record in `processes` is deleted once its work is all taken over.
        records = {"host": socket.gethostname(), "pid": {"$in": pids}}
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.mongo_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=10000
        )
        started = time.monotonic()
        try:
            while True:
                try:
                    left = client[self.database].processes.count_documents(records)
                except pymongo.errors.PyMongoError:
                    left = -1  # the database is slow or away: ask again
                if left == 0:
                    return
                if time.monotonic() - started > limit:
                    raise StepFailed(
                        f"its processes' records are still in the database after {limit:g} s "
                        "(the others take its work over at their lease rounds; the database "
                        "may be too slow for them)"
                    )
                time.sleep(0.5)
        finally:
            client.close()

    @property
    def database(self) -> str:
        """The database squad uses: its default, or the last ``--database`` after --."""
        name = "squad"
        for at, argument in enumerate(self.squad_args[:-1]):
            if argument == "--database":
                name = self.squad_args[at + 1]
        return name

    def rolling_restart(self) -> Outcome:
        """Replace every instance, one at a time, with no request lost (``cluster.rolling``)."""
        return RollingRestart(
            self, time.monotonic, time.sleep, say, takeover_limit=self.takeover_limit
        ).run()

    # the whole -----------------------------------------------------------------------------

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


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _processes() -> list[tuple[int, int, int, int]]:
    """(pid, parent pid, process group, start time) of every live process, from /proc (zombies
    left out)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # it exited meanwhile
        # The command name, in parentheses, may hold spaces: the fields follow its last ")".
        fields = text[text.rfind(")") + 2 :].split()
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), int(fields[2]), int(fields[19])))
    return found


def _common(folder: Path) -> str:
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return f"""# Written by bin/cluster; regenerated at every start.
{user}worker_processes 1;
# At a reload (a rolling restart) the old workers finish their requests; this bounds the wait
# for one that does not end (squad answers within about 2 s).
worker_shutdown_timeout 10s;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{
    worker_connections 4096;
}}
"""


def _temp_paths(folder: Path) -> str:
    return f"""    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
"""


def edge_config(port: int, balancer: Path, folder: Path) -> str:
    """The nginx clients talk to: never reloaded, one new connection to the balancer for each
    request (see ``Cluster``'s nginx section)."""
    return f"""{_common(folder)}http {{
    access_log off;
{_temp_paths(folder)}
    upstream balancer {{
        # No keep-alive, on purpose: the balancer's reloads must find no idle connection.
        server unix:{balancer};
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # squad answers 413 itself (with its JSON error body) from Content-Length, so let
        # bodies a little over its 16 KiB limit through and keep them in memory.
        client_max_body_size 64k;
        client_body_buffer_size 64k;

        location / {{
            proxy_pass http://balancer;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 1s;
            # Above the balancer's own bound: its retries end within 15 s, its reads at 10 s.
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
            # One balancer: there is no other upstream to try.
            proxy_next_upstream off;
        }}
    }}
}}
"""


def balancer_config(socket_path: Path, upstreams: list[int], folder: Path) -> str:
    """The nginx over the instances; a rolling restart rewrites ``upstreams`` and reloads."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams
    )
    return f"""{_common(folder)}http {{
    # Only the requests nginx sent to more than one instance ($upstream_addr lists every one it
    # tried): bin/cluster --check requires none while it restarts the instances.
    map $upstream_addr $squad_retried {{
        "~," 1;
        default 0;
    }}
    log_format squad_retried '$time_iso8601 $status tried "$upstream_addr" '
                             'answered "$upstream_status" in $request_time s';
    access_log {folder}/retried.log squad_retried if=$squad_retried;
{_temp_paths(folder)}
    upstream squad {{
{servers}
        # Idle connections kept open to the instances: no TCP handshake per request.
        keepalive 64;
        keepalive_requests 100000;
    }}

    server {{
        listen unix:{socket_path} backlog=4096;
        client_max_body_size 64k;
        client_body_buffer_size 64k;

        location / {{
            proxy_pass http://squad;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # The edge added the client's address already.
            proxy_set_header X-Forwarded-For $http_x_forwarded_for;
            # A dead instance refuses the connection at once; a hung one gets 1 s to accept.
            proxy_connect_timeout 1s;
            # squad answers every request within about 2 s (its database deadline, then a
            # 503 with Retry-After), so 10 s without a byte means the instance is gone.
            proxy_send_timeout 10s;
            proxy_read_timeout 10s;

            # When an instance dies mid-request (connection reset, refused, or timed out),
            # send the request to another one, POST included ("non_idempotent"). That is
            # safe for sign-ups sent with an Idempotency-Key: squad records the key and the
            # user's id before it writes the user, so the retry either answers the first
            # request's user or writes that same user under the same id; never a second
            # account. A POST without the key that reached a dying instance may, at worst,
            # create the sign-up twice; clients that retry should send the key. Answers
            # squad gave (503 included) are passed on, never retried here: the client
            # honours Retry-After. A rolling restart does not rely on this: it takes an
            # instance out of this block and waits for nginx's old workers to exit before
            # stopping it (cluster/rolling.py), so no request reaches a stopping instance.
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 15s;
        }}
    }}
}}
"""
