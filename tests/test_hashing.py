"""The background password hasher: FIFO, holding back while sign-ups arrive, never starved."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.hashing import IDLE_CHECK_SECONDS, PasswordHasher
from squad.passwords import PasswordSealer, generate_key
from squad.slowwork import Work


class RecordingSlowWork:
    """Stands in for SlowWork: holds every work item, records the hashes it is given."""

    def __init__(self) -> None:
        self.hasher: Any = None
        self.hashed: list[tuple[ObjectId, str]] = []
        self.dropped: set[ObjectId] = set()

    def holds(self, work: Work) -> bool:
        return work.user_id not in self.dropped

    def password_hashed(self, work: Work, password_hash: str) -> None:
        self.hashed.append((work.user_id, password_hash))


class PasswordHasherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sealer = PasswordSealer(generate_key())
        self.slow_work = RecordingSlowWork()
        self.busy = False
        self.passwords: list[str] = []

        def fake_hash(password: str) -> Deferred[str]:
            self.passwords.append(password)
            return succeed(f"$argon2id$fake-{len(self.passwords)}")

        slow_work: Any = self.slow_work
        self.hasher = PasswordHasher(
            self.clock, self.sealer, slow_work, busy=lambda: self.busy, hash_off_thread=fake_hash
        )
        self.hasher.startService()
        self.addCleanup(self.hasher.stopService)

    def submit(self, password: str) -> Work:
        user_id = ObjectId()
        work = Work(user_id, self.sealer.seal(password, associated=user_id.binary))
        self.hasher.submit(work)
        return work

    def test_hashes_in_order_as_soon_as_idle(self) -> None:
        """When no sign-ups arrive, submitted passwords are unsealed and hashed at once, in
        the order they came, and each hash goes back to the slow work."""
        first, second = self.submit("correct horse"), self.submit("battery staple")
        self.assertEqual(self.passwords, ["correct horse", "battery staple"])
        self.assertEqual(
            self.slow_work.hashed,
            [(first.user_id, "$argon2id$fake-1"), (second.user_id, "$argon2id$fake-2")],
        )
        self.assertEqual(self.hasher.backlog, 0)

    def test_while_busy_one_password_per_check_interval_never_none(self) -> None:
        """While sign-ups keep arriving the hasher holds back to one password per
        IDLE_CHECK_SECONDS, but never stops: a steady trickle of sign-ups (which keeps it busy
        all the time) cannot leave sealed passwords waiting for ever."""
        self.busy = True
        for n in range(3):
            self.submit(f"password {n}")
        self.assertEqual(self.passwords, [])
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0"])
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["password 0", "password 1"])
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(len(self.passwords), 3)
        self.assertEqual(self.hasher.backlog, 0)

    def test_dropped_work_costs_no_hash(self) -> None:
        """Work dropped meanwhile (DELETE /collections) is skipped without unsealing or
        hashing it."""
        self.busy = True
        dropped = self.submit("forget me")
        kept = self.submit("keep me")
        self.slow_work.dropped.add(dropped.user_id)
        self.busy = False
        self.clock.advance(IDLE_CHECK_SECONDS)
        self.assertEqual(self.passwords, ["keep me"])
        self.assertEqual(self.slow_work.hashed, [(kept.user_id, "$argon2id$fake-1")])
