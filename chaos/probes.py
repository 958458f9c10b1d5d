"""Waiting in the reactor, for ``bin/chaos``: a pause, the status a URL answers, and how long
until a URL answers a status or a port accepts connections."""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import task, threads

from harness.probes import port_open


async def sleep(reactor: Any, seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def status_of(reactor: Any, url: str) -> int | None:
    """The status ``url`` answers with (a fresh connection, 2 s at most), None on failure."""
    try:
        response = await treq.get(url, persistent=False, timeout=2, reactor=reactor)
        await response.content()
        return int(response.code)
    except Exception:
        return None


async def wait_status(reactor: Any, url: str, status: int, limit: float) -> float:
    """Seconds until ``url`` answers ``status``; raises after ``limit``."""
    started = reactor.seconds()
    while reactor.seconds() - started < limit:
        if await status_of(reactor, url) == status:
            return float(reactor.seconds() - started)
        await sleep(reactor, 0.1)
    raise RuntimeError(f"{url} did not answer {status} within {limit:g} s")


async def wait_port(reactor: Any, port: int, limit: float) -> float:
    """Seconds until something accepts connections on 127.0.0.1:``port``."""
    started = reactor.seconds()
    while reactor.seconds() - started < limit:
        # A connect may take its whole timeout: in a thread, not in the reactor.
        if await threads.deferToThread(port_open, port, 0.5):
            return float(reactor.seconds() - started)
        await sleep(reactor, 0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {limit:g} s")
