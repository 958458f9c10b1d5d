"""The process shape the reference servers share with squad: N worker processes, each serving
its own ``SO_REUSEPORT`` socket on one port, so a comparison is like for like.

Not part of the service. ``serve_workers`` binds the sockets the way squad's supervisor does,
starts one ``python -m <module> --worker-fd FD …`` per socket and stops them all on SIGTERM or
SIGINT, or as soon as one of them dies: a reference, not a product, does not limp on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from harness.services import ROOT

__all__ = ["serve_workers"]


def serve_workers(port: int, workers: int, module: str, arguments: Sequence[str] = ()) -> None:
    """Run ``workers`` processes of ``module`` on 127.0.0.1:``port`` until signalled."""
    from squad.runtime.supervisor import bind_listening_sockets

    listeners = bind_listening_sockets(f"tcp:{port}:interface=127.0.0.1", workers)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    children = [
        subprocess.Popen(
            [sys.executable, "-m", module, "--worker-fd", str(listener.fileno()), *arguments],
            pass_fds=[listener.fileno()],
            env=env,
        )
        for listener in listeners
    ]
    for listener in listeners:
        listener.close()

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    stop(signal.SIGTERM, None)
    for child in children:
        child.wait()
