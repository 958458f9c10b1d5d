"""What ``bin/chaos`` runs: the embedded database and squad, each a process group that it
SIGKILLs and restarts."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from harness.groups import signal_tree, stop_group
from harness.probes import free_port
from harness.services import start_database, start_squad

DATABASE = "squad_chaos"


class Processes:
    """The database and squad, each a process group we can SIGKILL and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db_port = free_port()
        self.http_port = free_port()
        self.db: subprocess.Popen[bytes] | None = None
        self.squad: subprocess.Popen[bytes] | None = None
        self.stopped = False

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.db_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _note_groups(self) -> None:
        # bin/chaos's exit trap kills these process groups if we die before stop_all.
        live = [p.pid for p in (self.db, self.squad) if p is not None and p.poll() is None]
        (self.workdir / "pgids").write_text("".join(f"{pid}\n" for pid in live))

    def start_db(self) -> None:
        self.db = start_database(self.db_port, self.workdir / "db", self.workdir / "db.log")
        self._note_groups()

    def start_squad(self) -> None:
        self.squad = start_squad(
            self.http_port,
            self.uri,
            self.workdir / "squad.log",
            "--workers",
            "2",
            "--lease-seconds",
            "10",
            "--slow-min",
            "1",
            "--slow-max",
            "3",
            "--seal-key-file",
            str(self.workdir / "seal.key"),
            database=DATABASE,
        )
        self._note_groups()

    def kill_squad(self) -> None:
        self._kill(self.squad)

    def kill_db(self) -> None:
        self._kill(self.db)

    def _kill(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None:
            signal_tree(process, signal.SIGKILL)
            process.wait()
        self._note_groups()

    def stop_all(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; safe to call more than once."""
        if self.stopped:
            return
        self.stopped = True
        for process in (self.squad, self.db):
            if process is not None:
                stop_group(process, 10)
        self._note_groups()
