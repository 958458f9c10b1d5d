"""FerretDB on the cluster's PostgreSQL: the Mongo wire protocol that squad's instances speak."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.parts import Child, Spawn, say, wait_for
from cluster.postgres import DATABASE_USER, POSTGRES_DATABASE
from harness.probes import free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
FERRETDB = Path(os.environ.get("SQUAD_FERRETDB", str(ROOT / ".tools" / "bin" / "ferretdb")))


def connections(instances: int, workers: int) -> int:
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
    return 16 * 9 * (instances + 1) * workers + 20


def start_ferretdb(spawn_part: Spawn, home: Path, postgres_port: int, pool: int) -> int:
    """Start FerretDB (its state in ``home/ferretdb``) with a pool of ``pool`` connections to
    PostgreSQL on ``postgres_port``; return its port once it accepts connections."""
    state = home / "ferretdb"
    state.mkdir(exist_ok=True)
    port = free_port()
    child: Child = spawn_part(
        "ferretdb",
        [
            str(FERRETDB),
            "--handler=postgresql",
            f"--postgresql-url=postgres://{DATABASE_USER}@127.0.0.1:{postgres_port}"
            f"/{POSTGRES_DATABASE}?pool_max_conns={pool}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={state}",
            f"--debug-addr=127.0.0.1:{free_port()}",
            "--telemetry=disable",
            "--log-level=ERROR",
        ],
    )
    wait_for("FerretDB", lambda: port_open(port), child, 30)
    say(f"FerretDB (PostgreSQL backend) on mongodb://127.0.0.1:{port}")
    return port
