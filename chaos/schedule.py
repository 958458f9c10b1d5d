"""The fault schedule of ``bin/chaos``: SIGKILL squad at a quarter of the load and the database
at 60 %, each restarted, and what that measured (``Faults``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.probes import sleep, status_of, wait_port, wait_status
from chaos.services import Processes

DATABASE_DOWN = 2.0


@dataclass
class Faults:
    """What the fault schedule measured."""

    squad_back: float | None = None
    ready_while_down: int | None = None
    db_back: float | None = None
    ready_after: float | None = None
    notes: list[str] = field(default_factory=list)


async def inject_faults(
    reactor: Any, procs: Processes, duration: float, say: Callable[[str], None]
) -> Faults:
    """SIGKILL squad at a quarter of the load, the database at 60 %, each restarted."""
    faults = Faults()
    started = reactor.seconds()
    await sleep(reactor, duration * 0.25)
    say("SIGKILL squad (parent and workers), restarting it")
    procs.kill_squad()
    killed = reactor.seconds()
    procs.start_squad()
    faults.squad_back = await wait_status(reactor, procs.url + "/health", 204, 60)
    say(f"squad serves again {reactor.seconds() - killed:.1f} s after the SIGKILL")

    await sleep(reactor, max(0.0, started + duration * 0.6 - reactor.seconds()))
    say(f"SIGKILL the database, restarting it in {DATABASE_DOWN:g} s")
    procs.kill_db()
    await sleep(reactor, DATABASE_DOWN / 2)
    faults.ready_while_down = await status_of(reactor, procs.url + "/ready")
    await sleep(reactor, DATABASE_DOWN / 2)
    procs.start_db()
    faults.db_back = await wait_port(reactor, procs.db_port, 60)
    faults.ready_after = await wait_status(reactor, procs.url + "/ready", 204, 60)
    say(
        f"the database accepts connections again ({faults.db_back:.1f} s after its restart); "
        f"/ready answered 204 {faults.ready_after:.2f} s later"
    )
    return faults
