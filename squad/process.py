"""The service tree of one squad process: database, lease, slow work, hasher, HTTP."""

from __future__ import annotations

import os
from typing import Any

import treq
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.logger import Logger

from squad.api import SquadAPI
from squad.batching import GroupCommit
from squad.database import DatabaseService
from squad.hashing import PasswordHasher
from squad.ownership import ProcessLease, new_owner_id
from squad.passwords import PasswordSealer, key_from_environment, load_or_create_key
from squad.resilience import CircuitBreaker
from squad.slowstep import HttpVerification, StandInVerification, Verification
from squad.slowwork import SlowWork
from squad.store import PendingSignup
from squad.web import SquadSite

__all__ = ["build_process_service", "listen_description"]

log = Logger()

# Database connections per process: FerretDB serves each connection one request at a time, so
# this bounds how many batches and lookups run at once.
POOL_SIZE = 8


def listen_description(port: str) -> str:
    """The endpoint with a deep accept queue: the default backlog of 50 drops connections when
    a thousand clients connect at once."""
    if port.startswith("tcp:") and "backlog=" not in port:
        return port + ":backlog=4096"
    return port


def seal_key(config: Any) -> bytes:
    environment_key = os.environ.get("SQUAD_SEAL_KEY")
    if environment_key:
        return key_from_environment(environment_key)
    return load_or_create_key(config["seal-key-file"])


def build_process_service(config: Any, reactor: Any) -> MultiService:
    root = MultiService()
    root.setName("squad")

    database = DatabaseService(
        config["mongo-uri"],
        config["database"],
        pool_size=POOL_SIZE,
        write_concern=config["write-concern"],
    )
    database.setServiceParent(root)
    store = database.store

    owner = new_owner_id()
    lease = ProcessLease(reactor, store, owner, config["lease-seconds"])
    lease.setServiceParent(root)

    verification: Verification
    if config["verifier-url"]:
        verification = HttpVerification(
            treq, config["verifier-url"], CircuitBreaker(reactor), timeout=30.0
        )
    else:
        verification = StandInVerification(reactor, config["slow-min"], config["slow-max"])
    slow_work = SlowWork(reactor, store, verification, owner)
    slow_work.setServiceParent(root)
    lease.add_refiller(slow_work.refill)

    hasher = PasswordHasher(reactor, store, PasswordSealer(seal_key(config)), owner)
    hasher.setServiceParent(root)
    lease.add_refiller(hasher.refill)

    commit: GroupCommit[PendingSignup] = GroupCommit(
        reactor, store.insert_signups, max_batch=200, concurrency=POOL_SIZE - 2
    )
    api = SquadAPI(
        reactor,
        store,
        commit,
        slow_work,
        hasher,
        hasher.sealer,
        allow_flush=config["allow-flush"],
    )
    site = SquadSite(api.app.resource())
    http = StreamServerEndpointService(
        endpoints.serverFromString(reactor, listen_description(config["port"])), site
    )
    http.setName("http")
    http.setServiceParent(root)
    return root
