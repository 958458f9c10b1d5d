"""The embedded database (``bin/db``) and squad (``twistd -n squad``) as real processes, each
the leader of a process group of its own (see ``harness.groups``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

from harness.groups import spawn

__all__ = [
    "ROOT",
    "database_command",
    "squad_command",
    "squad_environment",
    "start_database",
    "start_squad",
    "twistd",
]

#: The checkout: bin/db, the twistd plugin and the packages squad's processes import.
ROOT = Path(__file__).resolve().parents[1]


def twistd() -> list[str]:
    """The twistd of this Python (beside it in a virtual environment, or run as a module)."""
    beside = Path(sys.executable).parent / "twistd"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def squad_command(port: int, mongo_uri: str, *argv: str, database: str | None = None) -> list[str]:
    """``twistd -n squad`` (no pid file) on 127.0.0.1:``port``, its database at ``mongo_uri``
    (``database`` there, or squad's default), with ``argv`` after."""
    return [
        *twistd(),
        "--pidfile=",
        "-n",
        "squad",
        "--port",
        f"tcp:{port}:interface=127.0.0.1",
        "--mongo-uri",
        mongo_uri,
        *(["--database", database] if database is not None else []),
        *argv,
    ]


def squad_environment(
    keep: Collection[str] = (), base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (this process's environment) without squad's settings (every ``SQUAD_*`` but
    those in ``keep``, and the metrics folder), with the checkout importable: an editable
    install does not put ``twisted/plugins`` where twistd looks, and squad's workers import
    ``squad`` from there too."""
    base = os.environ if base is None else base
    env = {
        k: v
        for k, v in base.items()
        if (not k.startswith("SQUAD_") or k in keep) and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_squad(
    port: int,
    mongo_uri: str,
    log: Path,
    *argv: str,
    database: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``squad_command(...)`` from the checkout, in ``env`` (``squad_environment()``)."""
    command = squad_command(port, mongo_uri, *argv, database=database)
    return spawn(command, log, env=squad_environment() if env is None else env, cwd=ROOT)


def database_command(port: int, data: Path) -> list[str]:
    """``bin/db`` on 127.0.0.1:``port`` with its files in ``data``."""
    return [str(ROOT / "bin" / "db"), "--port", str(port), "--data", str(data)]


def start_database(
    port: int, data: Path, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the embedded database (``bin/db``) on ``port``; ``env`` reaches the database too
    (FerretDB's fast-path switch, say)."""
    return spawn(database_command(port, data), log, env=env)
