"""PostgreSQL for the cluster: Debian's binaries, a private data folder, 127.0.0.1 only, run
as an unprivileged account when we are root (it refuses root), with the index that FerretDB's
lookups by _id need."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cluster.parts import Child, ClusterError, RunAs, Spawn, say, wait_for
from harness.groups import spawn
from harness.probes import free_port

POSTGRES_BIN = Path(os.environ.get("SQUAD_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
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

    @property
    def run_as(self) -> RunAs | None:
        """The account to switch to: only root can, and only root needs to."""
        return RunAs(self.uid, self.gid) if os.geteuid() == 0 else None

    def owns(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
            for parent, folders, files in os.walk(path):
                for name in folders + files:
                    os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)

    def run(self, argv: list[str], log: Path, cwd: Path) -> int:
        """Run ``argv`` as this account to its end, its output appended to ``log``."""
        run_as = self.run_as
        return spawn(
            argv,
            log,
            cwd=cwd,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
        ).wait()


@dataclass
class Postgres:
    """The cluster's PostgreSQL, its data in ``home/postgres``."""

    home: Path
    logs: Path
    port: int = 0

    def start(self, spawn_part: Spawn, max_connections: int) -> Child:
        account = Account.for_postgres()
        data = self.home / "postgres"
        sockets = self.home / "postgres-socket"
        sockets.mkdir(exist_ok=True)
        account.owns(sockets)
        initdb_log = self.logs / "initdb.log"
        if account.run(["test", "-w", str(sockets)], initdb_log, self.home) != 0:
            raise ClusterError(
                f"PostgreSQL runs as {account.name}, which cannot reach {self.home} (a parent "
                "folder is private, /root for example): bin/cluster --data /var/tmp/squad-cluster"
            )
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(mode=0o700)
            account.owns(data)
            say(f"initialising PostgreSQL in {data} (as {account.name})")
            initdb = [
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
            ]
            if account.run(initdb, initdb_log, self.home) != 0:
                raise ClusterError(f"initdb failed; see {initdb_log}")
        self.port = free_port()
        child = spawn_part(
            "postgres",
            [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                # FerretDB's pool plus psql and a margin.
                "-c",
                f"max_connections={max_connections + 30}",
                "-c",
                "shared_buffers=256MB",
                # Durability stays PostgreSQL's default (synchronous_commit=on, fsync=on): an
                # acknowledged sign-up survives a crash of the database or of the machine.
                "-c",
                "log_min_messages=warning",
            ],
            run_as=account.run_as,
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for clients to leave.
            stop_signal=signal.SIGINT,
            cwd=self.home,
        )
        wait_for("PostgreSQL", lambda: self.psql("SELECT 1", quiet=True), child, 60)
        say(f"PostgreSQL on 127.0.0.1:{self.port} (data in {data})")
        if not self.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DATABASE}'", expect="1"
        ):
            self.psql(f"CREATE DATABASE {POSTGRES_DATABASE} ENCODING 'UTF8' TEMPLATE template0")
        if not self.psql(ID_INDEX_SQL, database=POSTGRES_DATABASE):
            raise ClusterError("could not install the _id index trigger (see above)")
        return child

    def psql(
        self,
        sql: str,
        *,
        database: str = "postgres",
        quiet: bool = False,
        expect: str | None = None,
    ) -> bool:
        """Run ``sql``; True when it worked (and printed ``expect``, when given)."""
        result = subprocess.run(
            [
                str(POSTGRES_BIN / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                "--host=127.0.0.1",
                f"--port={self.port}",
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
