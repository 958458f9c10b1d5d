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
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from squad.passwords import PasswordSealer, UnsealError, hash_password
from squad.slowwork import SlowWork, Work

__all__ = ["PasswordHasher"]

# How often a paused hasher looks whether the sign-ups have stopped.
IDLE_CHECK_SECONDS = 0.5

log = Logger()


def _hash_at_low_priority(password: str) -> str:
    # On Linux a thread has its own nice value: only the hashing thread yields the CPU.
    with contextlib.suppress(OSError):  # not permitted or not Linux: hash anyway
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    return hash_password(password)


class PasswordHasher(Service):
    """The background hasher of one process: one thread, lowest priority, FIFO."""

    def __init__(
        self,
        reactor: Any,
        sealer: PasswordSealer,
        slow_work: SlowWork,
        busy: Callable[[], bool] = lambda: False,
        hash_off_thread: Callable[[str], Deferred[str]] | None = None,
    ) -> None:
        # While sign-ups are flowing the hasher holds back to one password per
        # IDLE_CHECK_SECONDS: even at the lowest priority its thread takes CPU and memory
        # bandwidth from the reactor on a 2-core machine, but a steady trickle of sign-ups
        # must not stop it for good (sealed passwords would pile up in the database).
        self._busy = busy
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.sealer = sealer
        self._slow_work = slow_work
        slow_work.hasher = self
        self._queue: deque[Work] = deque()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="squad-password-hasher")
        # Tests pass a function that answers at once; squad hashes on its own thread.
        self._own_thread = hash_off_thread is None
        self._hash: Callable[[str], Deferred[str]] = hash_off_thread or self._hash_on_pool
        self._wake: Deferred[None] | None = None
        self._loop: Deferred[None] | None = None
        self.hashed = 0

    @property
    def backlog(self) -> int:
        """Passwords this process holds sealed in memory, waiting to be hashed."""
        return len(self._queue)

    def submit(self, work: Work) -> None:
        self._queue.append(work)
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake.callback(None)

    def drop_all(self) -> None:
        self._queue.clear()

    def _hash_on_pool(self, password: str) -> Deferred[str]:
        return deferToThreadPool(self._reactor, self._pool, _hash_at_low_priority, password)

    def startService(self) -> None:
        super().startService()
        if self._own_thread:
            self._pool.start()
        self._loop = ensureDeferred(self._work())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._queue.clear()
        if self._loop is not None:
            self._loop.addErrback(lambda failure: failure.trap(CancelledError))
            self._loop.cancel()
        if not self._own_thread:
            return succeed(None)
        # Waits for the password being hashed now (tens of milliseconds), off the reactor.
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._pool.stop)

    async def _work(self) -> None:
        while self.running:
            if not self._queue:
                self._wake = Deferred()
                await self._wake
                continue
            if self._busy():
                # Sign-ups are arriving: wait, then hash one password anyway.
                await deferLater(self._clock, IDLE_CHECK_SECONDS)
                if not self._queue:
                    continue
            work = self._queue.popleft()
            sealed = work.sealed_password
            if sealed is None or work.hashed or not self._slow_work.holds(work):
                continue  # done, or dropped (DELETE /collections): no CPU for it
            try:
                password = self.sealer.unseal(sealed, associated=work.user_id.binary)
            except UnsealError as error:
                # Sealed with another key (the key file was replaced): this password cannot be
                # recovered. Leave the sealed form for an operator rather than spin on it.
                log.error(
                    "Cannot unseal the password of user {user_id}: {error}. Was the seal key"
                    " replaced? The user is kept without a password hash.",
                    user_id=str(work.user_id),
                    error=error,
                )
                continue
            try:
                password_hash = await self._hash(password)
            except CancelledError:
                return
            finally:
                del password
            self.hashed += 1
            self._slow_work.password_hashed(work, password_hash)
