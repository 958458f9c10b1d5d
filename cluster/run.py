"""``bin/cluster N``: N squad instances on one PostgreSQL-backed FerretDB behind nginx.

In the foreground until Ctrl-C or SIGTERM, which stop everything it started. SIGHUP restarts
the instances one at a time with no request lost (``cluster.rolling``). With ``--check`` it runs
the fault check instead (see ``cluster.check``) and exits with its verdict.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from cluster.parts import ClusterError, say
from cluster.processes import Cluster
from harness.probes import free_port
from harness.services import ROOT

DEFAULT_HOME = ROOT / "var" / "cluster"


class Stop(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""


_stopping: list[int] = []
# Set by SIGHUP, cleared when the rolling restart it asked for starts.
_restart_asked: list[int] = []


def _stop(number: int, frame: FrameType | None) -> None:
    # Once: Ctrl-C reaches us both from the terminal and through bin/cluster's trap.
    if not _stopping:
        _stopping.append(number)
        raise Stop(signal.Signals(number).name)


def _ask_restart(number: int, frame: FrameType | None) -> None:
    # Only a flag: the restart runs from serve()'s loop, not inside a signal handler.
    if not _restart_asked:
        _restart_asked.append(number)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bin/cluster",
        description=(
            "Starts N squad instances (twistd -n squad, each on its own 127.0.0.1 port) on one "
            "database, FerretDB on PostgreSQL (Debian's, started here), behind nginx, in the "
            "foreground; Ctrl-C stops everything it started, SIGHUP (kill -HUP <pid>) "
            "restarts the instances one at a time with no request lost. Then, from another "
            "terminal: URL=http://127.0.0.1:9000 ./bin/benchmark"
        ),
        epilog=(
            "Data and logs go to var/cluster/ (--data); arguments after -- go to every "
            "twistd squad, e.g. bin/cluster 3 -- --slow-min 1 --slow-max 2"
        ),
    )
    parser.add_argument(
        "instances", metavar="N", nargs="?", type=int, default=3, help="instances (3)"
    )
    parser.add_argument("--port", type=int, default=9000, help="nginx's port (9000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per instance (1)")
    parser.add_argument("--data", type=Path, default=DEFAULT_HOME, help="folder (var/cluster)")
    parser.add_argument("--fresh", action="store_true", help="delete the data folder first")
    parser.add_argument(
        "--check",
        action="store_true",
        help=(
            "the fault check instead of serving: load through nginx while every instance is "
            "restarted in turn (no request may fail), then SIGKILL of one instance mid-run; "
            "no acknowledged user may be lost and all must be processed within 90 s (a "
            "private folder and port; exit status 0 when it passes)"
        ),
    )
    squad_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, squad_args = argv[:split], argv[split + 1 :]
    options = parser.parse_args(argv)
    options.squad_args = squad_args
    if not 1 <= options.instances <= 32:
        parser.error("N must be between 1 and 32")
    if options.check and options.instances < 2:
        parser.error("--check needs at least 2 instances (one is killed)")
    if not 1 <= options.port <= 65535:
        parser.error("--port must be a TCP port number")
    if not 1 <= options.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    return options


def serve(cluster: Cluster) -> int:
    cluster.start()
    say(
        f"ready: URL={cluster.url} SQUAD_MONGO_URI={cluster.mongo_uri} ./bin/benchmark"
        "   (Ctrl-C stops the cluster, SIGHUP restarts its instances one at a time)"
    )
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        if _restart_asked:
            # A SIGHUP during the restart asks for another one after it.
            _restart_asked.clear()
            cluster.rolling_restart()
            continue
        for child in cluster.dead():
            if child.name.startswith("squad-"):
                if child.name not in reported:
                    reported.add(child.name)
                    say(f"{child.name} exited; nginx sends its traffic to the others")
                continue
            say(f"{child.name} exited (status {child.process.returncode}):\n{child.log_tail()}")
            return 1


def main(argv: list[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if options.check else _ask_restart)
    if options.check:
        from cluster.check import run_check

        home = Path(tempfile.mkdtemp(prefix="squad-cluster-check-"))
        # The check's own port: it must not collide with a cluster someone is running.
        port = options.port if "--port" in (argv or sys.argv) else free_port()
    else:
        home = options.data.resolve()
        if options.fresh:
            shutil.rmtree(home, ignore_errors=True)
        port = options.port
    cluster = Cluster(home, options.instances, port, options.workers, options.squad_args)
    code = 1
    try:
        code = run_check(cluster) if options.check else serve(cluster)
    except ClusterError as error:
        say(f"error: {error}")
    except Stop as why:
        say(f"{why}: stopping the cluster")
        code = 1 if options.check else 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        cluster.stop()
        if options.check:
            if code == 0:
                shutil.rmtree(home, ignore_errors=True)
            else:
                say(f"logs kept in {home / 'logs'}")
    sys.exit(code)
