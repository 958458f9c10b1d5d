"""Turns sealed passwords into salted argon2id hashes, in the background, at low priority.

An argon2id hash at OWASP's parameters costs tens of milliseconds of CPU: paid inline it would
cap sign-ups at a few dozen per second per core. So the request path only seals the password
(authenticated encryption with a key that is never in the database, microseconds), and this
service hashes it later on one thread per process running at the lowest CPU priority, then
deletes the sealed form. Sign-ups burst; the hashing backlog drains when the burst is over.
The plaintext exists only in this process's memory, never on disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import Any

from bson import ObjectId
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from squad.passwords import PasswordSealer, UnsealError, hash_password
from squad.store import UNOWNED, Store

__all__ = ["PasswordHasher"]

log = Logger()


def _hash_at_low_priority(password: str) -> str:
    # On Linux a thread has its own nice value: only the hashing thread yields the CPU.
    with contextlib.suppress(OSError):  # not permitted or not Linux: hash anyway
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    return hash_password(password)


class PasswordHasher(Service):
    """The background hasher of one process."""

    def __init__(
        self,
        reactor: Any,
        store: Store,
        sealer: PasswordSealer,
        owner: str,
        capacity: int = 20_000,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._store = store
        self.sealer = sealer
        self.owner = owner
        self.capacity = capacity
        self._queue: deque[tuple[ObjectId, bytes]] = deque()
        self._reserved = 0
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="squad-password-hasher")
        self._wake: Deferred[None] | None = None
        self._loop: Deferred[None] | None = None
        self.hashed = 0

    @property
    def backlog(self) -> int:
        """Passwords this process holds sealed in memory, waiting to be hashed."""
        return len(self._queue)

    def owner_for_new_signup(self) -> str:
        if self.running and len(self._queue) + self._reserved < self.capacity:
            self._reserved += 1
            return self.owner
        return UNOWNED

    def signup_failed(self, owner: str) -> None:
        if owner == self.owner:
            self._reserved -= 1

    def accept(self, user_id: ObjectId, sealed: bytes, owner: str) -> None:
        if owner != self.owner:
            return
        self._reserved -= 1
        self._enqueue(user_id, sealed)

    def _enqueue(self, user_id: ObjectId, sealed: bytes) -> None:
        self._queue.append((user_id, sealed))
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake.callback(None)

    async def refill(self) -> None:
        room = self.capacity - len(self._queue) - self._reserved
        if not self.running or room <= 0:
            return
        for adopted in await self._store.adopt_passwords(self.owner, min(room, 1000)):
            self._enqueue(adopted.user_id, adopted.sealed_password)

    def drop_all(self) -> None:
        self._queue.clear()

    def startService(self) -> None:
        super().startService()
        self._pool.start()
        self._loop = ensureDeferred(self._work())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._queue.clear()
        if self._loop is not None:
            self._loop.addErrback(lambda failure: failure.trap(CancelledError))
            self._loop.cancel()
        # Waits for the password being hashed now (tens of milliseconds), off the reactor.
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._pool.stop)

    async def _work(self) -> None:
        while self.running:
            if not self._queue:
                self._wake = Deferred()
                await self._wake
                continue
            user_id, sealed = self._queue.popleft()
            try:
                await self._hash_one(user_id, sealed)
            except CancelledError:
                return
            except UnsealError as error:
                # Sealed with another key (the key file was replaced): this password cannot be
                # recovered. Leave the sealed form for an operator rather than spin on it.
                log.error(
                    "Cannot unseal the password of user {user_id}: {error}. Was the seal key"
                    " replaced? The user is kept without a password hash.",
                    user_id=str(user_id),
                    error=error,
                )
            except Exception as error:
                log.warn(
                    "Could not hash the password of user {user_id} yet ({error}); retrying.",
                    user_id=str(user_id),
                    error=error,
                )
                self._queue.append((user_id, sealed))
                await deferLater(self._clock, 1.0)

    async def _hash_one(self, user_id: ObjectId, sealed: bytes) -> None:
        password = self.sealer.unseal(sealed, associated=user_id.binary)
        password_hash = await deferToThreadPool(
            self._reactor, self._pool, _hash_at_low_priority, password
        )
        del password
        await self._store.store_password_hash(user_id, password_hash)
        self.hashed += 1
