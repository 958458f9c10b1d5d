"""The background password hasher: its own durable queue of sealed batches, oldest first,
holding back while sign-ups arrive but never starved, and the take-over of a dead process's
batches split among the live ones. All on a ``Clock`` with the fake store."""

from __future__ import annotations

from bson import ObjectId
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.background.finishing import FinishWriter
from squad.background.hashing import IDLE_CHECK_SECONDS, RETRY_SECONDS, PasswordHasher
from squad.passwords import PasswordSealer, generate_key
from tests.fakes import OWNER, START, FakeStore, quick_hasher

OTHER = "other-host:2:abcdef02"
DEAD = "dead-host:3:abcdef03"


class PasswordHasherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.sealer = PasswordSealer(generate_key())
        self.store = FakeStore()
        self.writer = FinishWriter(self.clock, self.store)
        self.busy = False
        self.heavy = False
        self.passwords: list[str] = []

        def fake_hash(password: str) -> Deferred[str]:
            self.passwords.append(password)
            return succeed(f"$argon2id$fake-{len(self.passwords)}")

        self.hasher = quick_hasher(
            self.clock,
            self.store,
            self.writer,
            sealer=self.sealer,
            busy=lambda: self.busy,
            heavy=lambda: self.heavy,
            hash_off_thread=fake_hash,
        )
        self.hasher.startService()
        self.addCleanup(self.hasher.stopService)

    def queue(self, *passwords: str, owner: str = OWNER) -> tuple[ObjectId, list[ObjectId]]:
        """Store a batch of sealed passwords (with their users) and hand it to the hasher."""
        user_ids = [self.store.seed_user(owner=None) for _ in passwords]
        batch_id = self.store.seed_sealed(
            [
                (user_id, self.sealer.seal(password, associated=user_id.binary))
                for user_id, password in zip(user_ids, passwords, strict=True)
            ],
            owner,
        )
        if owner == OWNER:
            self.hasher.enqueue(batch_id, len(passwords))
        return batch_id, user_ids

    def write(self) -> None:
        self.clock.advance(self.writer.interval)
        self.successResultOf(ensureDeferred(self.writer.flush()))

    def test_hashes_a_batch_as_soon_as_idle_then_deletes_it(self) -> None:
        """When no sign-ups arrive, a queued batch is read, unsealed and hashed at once, in
        order; the hashes are written to the users and only then is the batch deleted."""
        batch_id, (first, second) = self.queue("correct horse", "battery staple")
        self.assertEqual(self.passwords, ["correct horse", "battery staple"])
        self.assertEqual(self.hasher.backlog, 0)
        self.assertIn(batch_id, self.store.sealed_docs)  # not before the hashes are written
        self.write()
        self.assertEqual(self.store.user_docs[first]["password_hash"], "$argon2id$fake-1")
        self.assertEqual(self.store.user_docs[second]["password_hash"], "$argon2id$fake-2")
        self.assertEqual(self.store.sealed_docs, {})
        deletion = self.store.events.index(("delete_sealed", batch_id))
        self.assertLess(self.store.events.index(("update", second)), deletion)

    def test_oldest_batch_first_even_when_queued_late(self) -> None:
        """Batches are hashed oldest first, by their id's time, whatever order they arrive in
        (a take-over hands over older batches after newer ones)."""
        self.hasher.stopService()
        newer, _ = self.queue("newer")
        older_id = ObjectId.from_datetime(newer.generation_time.replace(year=2020))
        user_id = self.store.seed_user(owner=None)
        self.store.sealed_docs[older_id] = {
            "_id": older_id,
            "owner": OWNER,
            "users": [user_id],
            "sealed": [self.sealer.seal("older", associated=user_id.binary)],
        }
        self.hasher.enqueue(newer, 1)
        self.hasher.enqueue(older_id, 1)
        self.hasher.startService()
        self.assertEqual(self.passwords, ["older", "newer"])

    def test_while_busy_one_password_per_check_interval_never_none(self) -> None:
        """While sign-ups keep arriving the hasher holds back to one password per
        IDLE_CHECK_SECONDS, but never stops: a steady trickle of sign-ups (which keeps it busy
        all the time) cannot leave sealed passwords waiting for ever."""
        self.busy = True
        self.queue("password 0", "password 1", "password 2")
        self.assertEqual(self.passwords, [])
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0"])
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0", "password 1"])
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(len(self.passwords), 3)
        self.assertEqual(self.hasher.backlog, 0)

    def test_while_sign_ups_come_fast_nothing_is_hashed(self) -> None:
        """While sign-ups arrive fast the hasher hashes nothing at all (not even its trickle);
        when they slow to a trickle it resumes one password per IDLE_CHECK_SECONDS, and once
        they stop it hashes the rest."""
        self.busy = self.heavy = True
        self.queue("password 0", "password 1")
        for _ in range(10):
            self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, [])
        self.heavy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0"])
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0", "password 1"])

    def test_backlog_and_oldest_age_describe_the_queue(self) -> None:
        """The backlog counts the passwords queued and not yet hashed; the oldest age is the
        time since the oldest queued batch was written; both are 0 once it drains."""
        self.busy = True
        self.queue("a", "b")
        self.queue("c")
        self.assertEqual(self.hasher.backlog, 3)
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.hasher.backlog, 3)  # a batch leaves the count once hashed whole
        self.assertGreaterEqual(self.hasher.oldest_age(), IDLE_CHECK_SECONDS - 1)
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual((self.hasher.backlog, self.hasher.oldest_age()), (0, 0.0))

    def test_a_batch_already_gone_costs_no_hash(self) -> None:
        """A queued batch no longer in the database (hashed by a process that took it over
        earlier, or flushed) is skipped without unsealing or hashing anything."""
        self.hasher.stopService()
        gone, _ = self.queue("forget me")
        self.queue("keep me")
        del self.store.sealed_docs[gone]
        self.hasher.startService()
        self.assertEqual(self.passwords, ["keep me"])
        self.assertEqual(self.hasher.backlog, 0)

    def test_a_database_that_does_not_answer_delays_the_batch_without_losing_it(self) -> None:
        """When a batch cannot be read, the hasher waits and reads it again; the batch stays
        first in line and is hashed once the database answers."""
        self.store.make_fail("find_sealed", times=2)
        self.queue("patience")
        self.assertEqual(self.passwords, [])
        self.clock.advance(RETRY_SECONDS)
        self.assertEqual(self.passwords, [])
        self.clock.advance(RETRY_SECONDS)
        self.assertEqual(self.passwords, ["patience"])

    def test_a_password_sealed_with_another_key_is_kept_sealed(self) -> None:
        """A password that cannot be unsealed (the key was replaced) is not hashed, and its
        batch stays in the database for an operator who still has the old key."""
        user_id = self.store.seed_user(owner=None)
        other = PasswordSealer(generate_key())
        batch_id = self.store.seed_sealed(
            [(user_id, other.seal("lost", associated=user_id.binary))], OWNER
        )
        self.hasher.enqueue(batch_id, 1)
        self.write()
        self.assertEqual(self.passwords, [])
        self.assertIn(batch_id, self.store.sealed_docs)
        self.assertNotIn("password_hash", self.store.user_docs[user_id])
        self.flushLoggedErrors()

    def test_drop_all_forgets_the_queue(self) -> None:
        """DELETE /collections empties the queue: nothing more is read or hashed."""
        self.busy = True
        self.queue("gone")
        self.hasher.drop_all()
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual((self.passwords, self.hasher.backlog), ([], 0))


class TakeOverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = FakeStore()
        self.writer = FinishWriter(self.clock, self.store)

    def hasher(self, owner: str, live: list[str]) -> PasswordHasher:
        hasher = quick_hasher(
            self.clock, self.store, self.writer, sealer=PasswordSealer(generate_key()), owner=owner
        )
        hasher.note_live(live)
        hasher.running = True  # queues without hashing: the test looks at what it took
        return hasher

    def test_live_processes_split_a_dead_ones_batches_and_together_take_them_all(
        self,
    ) -> None:
        """Two live processes each take over a share of a dead process's batches, without
        overlap; once both did, nothing of the dead one's is left and both say so."""
        batches = {self.store.seed_sealed([(ObjectId(), b"x")], DEAD) for _ in range(40)}
        live = sorted([OWNER, OTHER])
        ours, theirs = self.hasher(OWNER, live), self.hasher(OTHER, live)
        first = self.successResultOf(ensureDeferred(ours.refill([DEAD])))
        self.successResultOf(ensureDeferred(theirs.refill([DEAD])))
        self.assertFalse(first)  # the other share was still the dead one's
        owners = {batch: self.store.sealed_docs[batch]["owner"] for batch in batches}
        self.assertEqual(set(owners.values()), {OWNER, OTHER})
        self.assertEqual(ours.backlog + theirs.backlog, 40)
        self.assertTrue(self.successResultOf(ensureDeferred(ours.refill([DEAD]))))

    def test_a_dead_owner_with_nothing_left_is_not_looked_for_again(self) -> None:
        """Once a dead owner was seen with no batch left, later rounds do not read the queue
        for it again (on FerretDB that read is a whole-collection scan)."""
        hasher = self.hasher(OWNER, [OWNER])
        self.assertTrue(self.successResultOf(ensureDeferred(hasher.refill([DEAD]))))
        self.assertTrue(self.successResultOf(ensureDeferred(hasher.refill([DEAD]))))
        self.assertEqual(self.store.called("sealed_batches_of"), 1)
