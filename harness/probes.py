"""Probes of 127.0.0.1: a free port, whether a port accepts connections or a URL answers, and
waiting (blocking, with the clock and the sleep as parameters) until one does."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

__all__ = [
    "NotReady",
    "free_port",
    "http_status",
    "port_open",
    "wait_http",
    "wait_port",
    "wait_until",
]

HOST = "127.0.0.1"


class NotReady(Exception):
    """What was waited for did not come in time, or its process exited first; the message says
    which."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel picks it; another
    program may take it before the caller binds it, a race small enough for tools and tests)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def port_open(port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    with socket.socket() as probe:
        probe.settimeout(timeout)
        return probe.connect_ex((HOST, port)) == 0


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status ``GET url`` answers with, or None when nothing answers in ``timeout`` s."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def wait_until(
    ready: Callable[[], bool],
    limit: float,
    what: str,
    *,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Seconds until ``ready()`` is true, asked every ``interval`` s. Raise L{NotReady} after
    ``limit`` s, or as soon as ``alive()`` says the process that should make it true exited."""
    started = clock()
    while not ready():
        if not alive():
            raise NotReady(f"{what} exited at start")
        if clock() - started > limit:
            raise NotReady(f"{what} not ready after {limit:g} s")
        sleep(interval)
    return clock() - started


def wait_port(
    port: int, limit: float, what: str = "", *, alive: Callable[[], bool] = lambda: True
) -> float:
    """Seconds until 127.0.0.1:``port`` accepts connections (see L{wait_until})."""
    return wait_until(lambda: port_open(port), limit, what or f"127.0.0.1:{port}", alive=alive)


def wait_http(
    url: str,
    status: int,
    limit: float,
    what: str = "",
    *,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Seconds until ``GET url`` answers ``status`` (see L{wait_until})."""
    return wait_until(lambda: http_status(url) == status, limit, what or url, alive=alive)
