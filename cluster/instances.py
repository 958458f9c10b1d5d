"""The cluster's squad instances: ``twistd -n squad`` each on a port of its own, all sharing the
database and one seal key; how one is started and waited for, and how the take-over of a
stopped one's work is watched in the database."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors

from cluster.parts import Child, Spawn, wait_for
from cluster.rolling import StepFailed
from harness.probes import free_port, http_status
from harness.services import ROOT, squad_command, squad_environment


def start_instance(
    spawn_part: Spawn,
    name: str,
    home: Path,
    mongo_uri: str,
    workers: int,
    squad_args: list[str],
    after: Child | None = None,
) -> Child:
    """Start the instance ``name`` on a free port (``after`` the one it replaces, if any)."""
    key = home / "seal.key"  # shared: any instance may hash another's passwords
    port = free_port()
    command = squad_command(
        port,
        mongo_uri,
        "--workers",
        str(workers),
        "--seal-key-file",
        str(key),
        "--allow-flush",
        *squad_args,
    )
    environment = squad_environment(keep={"SQUAD_SEAL_KEY"})
    return spawn_part(
        name,
        command,
        env={**environment, "SQUAD_INSTANCE": f"{name}@127.0.0.1:{port}"},
        cwd=ROOT,
        port=port,
        after=after,
    )


def wait_instance(child: Child, limit: float) -> None:
    """Return once the instance answers ``GET /ready`` with 204 (``ClusterError`` if not)."""
    url = f"http://127.0.0.1:{child.port}/ready"
    wait_for(child.name, lambda: http_status(url) == 204, child, limit)


def database_of(squad_args: list[str]) -> str:
    """The database squad uses: its default, or the last ``--database`` in ``squad_args``."""
    name = "squad"
    for at, argument in enumerate(squad_args[:-1]):
        if argument == "--database":
            name = squad_args[at + 1]
    return name


def wait_taken_over(mongo_uri: str, database: str, pids: list[int], limit: float) -> None:
    """Return once no record of the stopped processes ``pids`` is left in ``processes``: the
    others have taken all their work over. ``StepFailed`` after ``limit`` s."""
    if not pids:
        return
    # A stopped process's record in `processes` is deleted once its work is all taken over.
    records = {"host": socket.gethostname(), "pid": {"$in": pids}}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=10000
    )
    started = time.monotonic()
    try:
        while True:
            try:
                left = client[database].processes.count_documents(records)
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
