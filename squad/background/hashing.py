"""Turns sealed passwords into salted argon2id hashes, in the background, at low priority.

An argon2id hash at OWASP's parameters costs tens of milliseconds of CPU: paid inline it would
cap sign-ups at a few dozen per second per core. So the request path only seals the password
(authenticated encryption with a key that is never in the database, microseconds), and this
service hashes it later on one thread per process running at the lowest CPU priority.

The sealed passwords are written once, with each batch's work, into a durable queue of their
own (``sealed_passwords``, one document per batch, owned by the process that accepted the batch):
under steady load they may pile up there, bounded by the CPU, and nothing else waits for them.
In memory a process keeps only the ids and sizes of its batches, oldest first; it reads a batch
by ``_id`` when its turn comes, hashes it, has the hashes written, and says so
(``on_batch_hashed``): the sealed form goes then, or with the batch's last slow step when the
document also records those. Batches left by a process that died are split among the live
processes and taken over, the slow steps they still record first set down in ``pending``. The
plaintext exists only in this process's memory, never on disk.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from bson import ObjectId
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from squad.background.finishing import FinishWriter
from squad.passwords import PasswordSealer, UnsealError, hash_password
from squad.storage.store import UNOWNED, IStore

__all__ = ["HEAVY_SIGNUPS_PER_SECOND", "PasswordHasher"]

# How often a paused hasher looks whether the sign-ups have stopped.
IDLE_CHECK_SECONDS = 0.5
# Sign-ups per second in one process from which the hasher stops altogether: its trickle, one
# password per IDLE_CHECK_SECONDS, would drain under 1% of them.
HEAVY_SIGNUPS_PER_SECOND = round(100 / IDLE_CHECK_SECONDS)
# How long to wait before reading a batch again after the database failed to answer.
RETRY_SECONDS = 1.0

log = Logger()


def _hash_at_low_priority(password: str) -> str:
    # On Linux a thread has its own nice value: only the hashing thread yields the CPU.
    with contextlib.suppress(OSError):  # not permitted or not Linux: hash anyway
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    return hash_password(password)


def _share(batch_id: ObjectId, live: Sequence[str], owner: str) -> bool:
    """Whether ``owner`` takes this batch of a dead process: the live processes split them by
    id, so they do not all read and hash the same ones."""
    if owner not in live:
        return True
    return zlib.crc32(batch_id.binary) % len(live) == sorted(live).index(owner)


class PasswordHasher(Service):
    """The background hasher of one process: one thread, lowest priority, oldest batch first."""

    def __init__(
        self,
        reactor: Any,
        sealer: PasswordSealer,
        store: IStore,
        writer: FinishWriter,
        owner: str,
        busy: Callable[[], bool] = lambda: False,
        heavy: Callable[[], bool] = lambda: False,
        hash_off_thread: Callable[[str], Deferred[str]] | None = None,
    ) -> None:
        # While sign-ups are flowing the hasher holds back to one password per
        # IDLE_CHECK_SECONDS: even at the lowest priority its thread takes CPU and memory
        # bandwidth from the reactor on a 2-core machine, but a steady trickle of sign-ups
        # must not stop it for good (sealed passwords would pile up in the database).
        self._busy = busy
        # While sign-ups come fast it stops altogether: the trickle would drain a negligible
        # share of them, and the CPU it takes would slow the answers.
        self._heavy = heavy
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.sealer = sealer
        self._store = store
        self._writer = writer
        self.owner = owner
        #: Told of each batch whose passwords are all hashed; by default its document goes at
        #: once (squad's service tree lets the slow work decide, see SlowWork.passwords_done).
        self.on_batch_hashed: Callable[[ObjectId], None] = writer.sealed_done
        # Batch id -> number of passwords; ids sort by creation time, so the list is oldest first.
        self._order: list[ObjectId] = []
        self._sizes: dict[ObjectId, int] = {}
        self._queued = 0
        self._seen_dead: set[str] = set()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="squad-password-hasher")
        # Tests pass a function that answers at once; squad hashes on its own thread.
        self._own_thread = hash_off_thread is None
        self._hash: Callable[[str], Deferred[str]] = hash_off_thread or self._hash_on_pool
        self._wake: Deferred[None] | None = None
        self._loop: Deferred[None] | None = None
        self.hashed = 0
        # The live processes, as the lease last saw them (to split a dead one's batches).
        self._live: Sequence[str] = (owner,)

    def note_live(self, owners: Sequence[str]) -> None:
        """The lease saw these processes alive (this one included) at its last renewal."""
        self._live = tuple(owners)

    @property
    def backlog(self) -> int:
        """Passwords this process has queued (in the database) and not hashed yet."""
        return self._queued

    def oldest_age(self) -> float:
        """Seconds since the oldest batch in this process's queue was written (0 if none)."""
        if not self._order:
            return 0.0
        created = self._order[0].generation_time.timestamp()
        return max(0.0, self._clock.seconds() - created)

    def enqueue(self, batch_id: ObjectId, size: int) -> None:
        """A batch of ``size`` sealed passwords was written (or may have been) for us to hash."""
        if batch_id in self._sizes:
            return
        self._sizes[batch_id] = size
        self._queued += size
        if not self._order or batch_id > self._order[-1]:
            self._order.append(batch_id)
        else:
            bisect.insort(self._order, batch_id)
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake.callback(None)

    def _forget(self, batch_id: ObjectId) -> None:
        size = self._sizes.pop(batch_id, None)
        if size is None:
            return
        self._queued -= size
        index = bisect.bisect_left(self._order, batch_id)
        if index < len(self._order) and self._order[index] == batch_id:
            del self._order[index]

    def drop_all(self) -> None:
        self._order.clear()
        self._sizes.clear()
        self._queued = 0

    def drop_accepted_before(self, moment: float) -> None:
        """Another process ran DELETE /collections at ``moment``: its batches are gone."""
        for batch_id in [b for b in self._order if b.generation_time.timestamp() < moment]:
            self._forget(batch_id)

    async def refill(self, owners: Sequence[str]) -> bool:
        """Take over this process's share of the batches that dead ``owners`` left.

        True once none of theirs is left (so they can be forgotten). The look reads the whole
        queue on FerretDB, so each dead owner is looked for until nothing of theirs is left,
        then never again.
        """
        dead = [owner for owner in owners if owner != UNOWNED and owner not in self._seen_dead]
        if not dead or not self.running:
            return True
        left = await self._store.sealed_batches_of(dead)
        if not left:
            self._seen_dead.update(dead)
            return True
        live = self._live
        mine = [batch for batch in left if _share(batch.batch_id, live, self.owner)]
        recorded = 0
        if mine:
            # Before the claim, so that whoever sees these batches claimed sees their steps
            # recorded too: a batch's passwords document may be their only record (a process
            # stopped gracefully recorded its own; a killed one could not).
            recorded = await self._store.record_steps_left(mine)
            await self._store.claim_sealed(self.owner, [batch.batch_id for batch in mine])
            log.info(
                "Took over {count} sealed passwords to hash from {owners}.",
                count=sum(len(batch.users) for batch in mine),
                owners=", ".join(dead),
            )
            for batch in mine:
                self.enqueue(batch.batch_id, len(batch.users))
        # Steps recorded just now are adopted at the next round: the dead owner must not be
        # forgotten before.
        return len(mine) == len(left) and not recorded

    def _hash_on_pool(self, password: str) -> Deferred[str]:
        return deferToThreadPool(self._reactor, self._pool, _hash_at_low_priority, password)

    def startService(self) -> None:
        super().startService()
        if self._own_thread:
            self._pool.start()
        self._loop = ensureDeferred(self._work())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        # What is queued stays in the database; the lease hands it over.
        self.drop_all()
        if self._loop is not None:
            self._loop.addErrback(lambda failure: failure.trap(CancelledError))
            self._loop.cancel()
        if not self._own_thread:
            return succeed(None)
        # Waits for the password being hashed now (tens of milliseconds), off the reactor.
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._pool.stop)

    async def _work(self) -> None:
        while self.running:
            if not self._order:
                self._wake = Deferred()
                await self._wake
                continue
            batch_id = self._order[0]
            try:
                batch = await self._store.find_sealed(batch_id)
            except CancelledError:
                return
            except Exception as error:
                log.debug("Sealed passwords not readable yet: {error}", error=error)
                await deferLater(self._clock, RETRY_SECONDS)
                continue
            if batch is None:
                self._forget(batch_id)  # hashed already, or never written, or flushed
                continue
            unsealed_all = True
            for user_id, sealed in batch.passwords:
                await self._hold_back()
                if batch_id not in self._sizes:
                    break  # dropped meanwhile (DELETE /collections)
                password_hash = await self._hash_one(user_id, sealed)
                if password_hash is None:
                    unsealed_all = False
                else:
                    self._writer.set_fields(user_id, {"password_hash": password_hash})
                    self.hashed += 1
            else:
                if unsealed_all:  # else keep the sealed form for an operator with the old key
                    self.on_batch_hashed(batch_id)
            self._forget(batch_id)

    async def _hold_back(self) -> None:
        """While sign-ups are arriving: wait, then let one password through, unless they
        arrive fast."""
        if not self._busy():
            return
        await deferLater(self._clock, IDLE_CHECK_SECONDS)
        while self._heavy():
            await deferLater(self._clock, IDLE_CHECK_SECONDS)

    async def _hash_one(self, user_id: ObjectId, sealed: bytes) -> str | None:
        try:
            password = self.sealer.unseal(sealed, associated=user_id.binary)
        except UnsealError as error:
            # Sealed with another key (the key file was replaced): this password cannot be
            # recovered. Leave the user without a hash and say so, rather than spin on it.
            log.error(
                "Cannot unseal the password of user {user_id}: {error}. Was the seal key"
                " replaced? The user is kept without a password hash.",
                user_id=str(user_id),
                error=error,
            )
            return None
        try:
            return await self._hash(password)
        finally:
            del password
