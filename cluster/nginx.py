"""nginx in front of the cluster's instances: two of them (see below), their configurations,
and the balancer's reload onto a new set of instances."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.parts import Child, ClusterError, Spawn, wait_for
from cluster.rolling import StepFailed
from harness.probes import http_status
from harness.processes import children, started

# Two nginx: the edge, on --port, which clients keep connections to and which is never
# reloaded; and the balancer behind it, over the instances, which a rolling restart
# reloads. A reloading nginx closes the idle keep-alive connections of its old workers, and
# a client sending its next request on one just then gets no answer (4 failed POSTs in the
# first rolling restart under load, with one nginx). The edge opens a new connection to the
# balancer for each request (a Unix socket, no keep-alive), so the balancer's old workers
# never hold an idle one: they answer what they hold and exit.


@dataclass
class Nginx:
    """The edge on ``port`` and the balancer behind it, their folders under ``home``."""

    home: Path
    port: int
    balancer: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def folder(self) -> Path:
        """The balancer's folder: its configuration, logs and ``retried.log``."""
        return self.home / "nginx"

    @property
    def edge_folder(self) -> Path:
        return self.home / "nginx-edge"

    @property
    def balancer_socket(self) -> Path:
        return self.folder / "balancer.sock"

    def _write_balancer_config(self, ports: list[int]) -> Path:
        return write_checked(self.folder, balancer_config(self.balancer_socket, ports, self.folder))

    def start(self, spawn_part: Spawn, ports: list[int]) -> None:
        """Start the balancer over the instances on ``ports``, then the edge."""
        config = self._write_balancer_config(ports)
        self.balancer_socket.unlink(missing_ok=True)  # left by a cluster that was killed
        balancer = spawn_part(
            "nginx-balancer",
            [_nginx(), "-p", str(self.folder), "-c", str(config), "-g", "daemon off;"],
        )
        self.balancer = balancer
        wait_for("nginx (balancer)", self.balancer_socket.exists, balancer, 30)
        edge = self.edge_folder
        config = write_checked(edge, edge_config(self.port, self.balancer_socket, edge))
        child = spawn_part(
            "nginx", [_nginx(), "-p", str(edge), "-c", str(config), "-g", "daemon off;"]
        )
        wait_for("nginx", lambda: http_status(self.url + "/health") == 204, child, 30)

    def workers(self) -> frozenset[tuple[int, float]]:
        """The balancer's worker processes now, as (pid, start time) so that a reused pid is
        no match."""
        if self.balancer is None:
            return frozenset()
        found = ((pid, started(pid)) for pid in children(self.balancer.process.pid))
        return frozenset((pid, at) for pid, at in found if at is not None)

    def reload(self, ports: list[int]) -> frozenset[tuple[int, float]]:
        """Send the balancer's traffic to the instances on ``ports``; return its old workers,
        which finish what they hold and exit (``wait_drained``)."""
        if self.balancer is None or not self.balancer.alive:
            raise StepFailed("nginx is not running")
        try:
            self._write_balancer_config(ports)
        except ClusterError as error:
            raise StepFailed(str(error)) from None
        before = self.workers()
        # nginx -s reload sends the master this same signal.
        self.balancer.kill(signal.SIGHUP)
        return before

    def wait_drained(self, drain: frozenset[tuple[int, float]], limit: float) -> None:
        started_at = time.monotonic()
        while drain & self.workers():
            if time.monotonic() - started_at > limit:
                pids = ", ".join(str(pid) for pid, _ in sorted(drain & self.workers()))
                raise StepFailed(f"nginx's old workers ({pids}) still run after {limit:g} s")
            time.sleep(0.05)


def write_checked(folder: Path, text: str) -> Path:
    """Write ``folder/nginx.conf`` once ``nginx -t`` accepts ``text`` (the file in use is left
    alone when it does not)."""
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


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


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
    request (see the comment at the top of this module)."""
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
