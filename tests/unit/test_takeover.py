"""The process lease: heartbeats, taking over dead processes' work, flushes seen by all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.background.takeover import ProcessLease
from squad.storage.store import UNOWNED
from tests.fakes import FakeStore


class ProcessLeaseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = FakeStore()
        self.looks: list[list[str]] = []
        self.drops: list[float] = []
        self.seen_all = True
        self.refilling: Deferred[bool] | None = None
        self.unowned_written_at: float | None = None

        def refill(owners: Sequence[str]) -> Deferred[bool]:
            self.looks.append(list(owners))
            if self.refilling is not None:
                return self.refilling
            return succeed(self.seen_all)

        self.lease = ProcessLease(
            self.clock,
            self.store,
            "me",
            lease_seconds=10,
            refillers=[refill],
            droppers=[self.drops.append],
            unowned_written_at=lambda: self.unowned_written_at,
        )

    def tick(self) -> None:
        self.successResultOf(ensureDeferred(self.lease.tick()))

    def test_heartbeat_renews_the_lease(self) -> None:
        """Each round writes this process's heartbeat, valid for the lease period."""
        self.tick()
        alive_until = self.store.process_docs["me"]["alive_until"]
        self.assertEqual(alive_until.replace(tzinfo=UTC).timestamp(), self.clock.seconds() + 10)

    def bury(self, owner: str) -> None:
        self.store.process_docs[owner] = {
            "_id": owner,
            "alive_until": datetime.fromtimestamp(self.clock.seconds() - 5, tz=UTC),
        }

    def test_dead_process_work_is_adopted_then_the_process_forgotten(self) -> None:
        """A process whose heartbeat lapsed: refillers are asked at once to adopt its work, and
        once they saw all of it the dead process's heartbeat is deleted."""
        self.tick()
        self.clock.advance(1)
        self.bury("dead")
        self.tick()
        self.assertEqual(self.looks, [[UNOWNED], ["dead"]])
        self.assertNotIn("dead", self.store.process_docs)

    def test_a_dead_process_is_kept_while_its_work_is_not_all_adopted(self) -> None:
        """When the refillers ran out of room before seeing all of a dead process's work, the
        dead process stays listed, so the next round adopts more of it."""
        self.tick()
        self.bury("dead")
        self.seen_all = False
        self.clock.advance(1)
        self.tick()
        self.assertIn("dead", self.store.process_docs)
        self.seen_all = True
        self.clock.advance(1)
        self.tick()
        self.assertEqual(self.looks[1:], [["dead"], ["dead"]])
        self.assertNotIn("dead", self.store.process_docs)

    def test_a_long_adoption_does_not_hold_up_the_heartbeat(self) -> None:
        """While an adoption is still running, later rounds renew the heartbeat without
        waiting for it and without starting another."""
        self.tick()
        self.bury("dead")
        self.refilling = Deferred()
        self.clock.advance(1)
        self.tick()
        self.clock.advance(1)
        self.tick()
        alive_until = self.store.process_docs["me"]["alive_until"]
        self.assertEqual(alive_until.replace(tzinfo=UTC).timestamp(), self.clock.seconds() + 10)
        self.assertEqual(self.looks[1:], [["dead"]])
        self.refilling.callback(True)
        self.assertNotIn("dead", self.store.process_docs)
        self.refilling = None
        self.clock.advance(1)
        self.tick()
        self.assertEqual(self.looks[1:], [["dead"], []])

    def test_a_stopped_process_marks_itself_lapsed(self) -> None:
        """A graceful stop hands the work over in one write: its own heartbeat lapses at once,
        so another process's next round takes the work over (no per-document release)."""
        self.lease.startService()
        self.successResultOf(self.lease.stopService())
        self.assertEqual(self.store.calls[-1], ("mark_stopped", ("me",)))
        looks: list[list[str]] = []

        def refill(owners: Sequence[str]) -> Deferred[bool]:
            looks.append(list(owners))
            return succeed(True)

        other = ProcessLease(self.clock, self.store, "other", lease_seconds=10, refillers=[refill])
        self.successResultOf(ensureDeferred(other.tick()))
        self.assertEqual(looks, [["me", UNOWNED]])

    def test_a_stop_during_a_renewal_hands_over_after_it(self) -> None:
        """A stop while a heartbeat write is in flight waits for it, then writes the hand-over:
        the late heartbeat cannot land after the hand-over and keep the work held."""
        self.store.make_hang("heartbeat")
        self.lease.startService()
        stopped = self.lease.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.store.called("mark_stopped"), 0)
        self.store.heal()
        self.store.hung("heartbeat")[0].callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.store.calls[-1], ("mark_stopped", ("me",)))

    def test_unowned_work_is_looked_for_at_start_then_only_when_signalled(self) -> None:
        """The expensive look for unowned work happens in the first round (work left from
        before), then not again while no process says it stored any."""
        self.tick()
        for _ in range(6):
            self.clock.advance(5)
            self.tick()
        self.assertEqual(self.looks, [[UNOWNED], [], [], [], [], [], []])

    def mark_unowned(self, owner: str, at: float) -> None:
        self.store.process_docs[owner] = {
            "_id": owner,
            "alive_until": datetime.fromtimestamp(self.clock.seconds() + 60, tz=UTC),
            "unowned_at": datetime.fromtimestamp(at, tz=UTC),
        }

    def test_a_process_that_stored_unowned_work_makes_the_others_look(self) -> None:
        """When another process's heartbeat says it stored unowned work after our last look,
        we look at the next round a lease period after it, and once only for that mark (a mark
        a few heartbeats before a look, within the clock slack, would make it look twice)."""
        self.tick()
        self.clock.advance(1)
        self.mark_unowned("other", self.clock.seconds())
        self.clock.advance(4)
        self.tick()  # a lease period has not passed since the first look
        self.clock.advance(5)
        self.tick()
        self.clock.advance(10)
        self.tick()
        self.assertEqual(self.looks, [[UNOWNED], [], [UNOWNED], []])

    def test_an_old_mark_does_not_make_anyone_look(self) -> None:
        """A mark from before our last look (that look saw its work) starts no new look."""
        self.mark_unowned("other", self.clock.seconds() - 100)
        self.tick()
        for _ in range(4):
            self.clock.advance(10)
            self.tick()
        self.assertEqual(self.looks, [[UNOWNED], [], [], [], []])

    def test_a_look_that_ran_out_of_room_is_repeated(self) -> None:
        """When the refillers could not take all unowned work, the next lease period looks
        again, with no new mark."""
        self.seen_all = False
        self.tick()
        self.seen_all = True
        self.clock.advance(10)
        self.tick()
        self.clock.advance(10)
        self.tick()
        self.assertEqual(self.looks, [[UNOWNED], [UNOWNED], []])

    def test_a_safety_look_every_ten_lease_periods(self) -> None:
        """Without any mark, unowned work is still looked for every ten lease periods (a
        process may have stored some and died before its next heartbeat said so)."""
        self.tick()
        for _ in range(10):
            self.clock.advance(10)
            self.tick()
        self.assertEqual(self.looks.count([UNOWNED]), 2)
        self.assertEqual(self.looks[-1], [UNOWNED])

    def test_the_heartbeat_says_when_this_process_stored_unowned_work(self) -> None:
        """The heartbeat carries the time this process last stored unowned work, and so does
        the hand-over at stop; without any, the field is absent."""
        self.tick()
        self.assertNotIn("unowned_at", self.store.process_docs["me"])
        self.unowned_written_at = self.clock.seconds()
        self.tick()
        mark = self.store.process_docs["me"]["unowned_at"]
        self.assertEqual(mark.replace(tzinfo=UTC).timestamp(), self.unowned_written_at)
        self.clock.advance(3)
        self.unowned_written_at = self.clock.seconds()
        self.lease.startService()
        self.successResultOf(self.lease.stopService())
        mark = self.store.process_docs["me"]["unowned_at"]
        self.assertEqual(mark.replace(tzinfo=UTC).timestamp(), self.unowned_written_at)

    def test_a_flush_elsewhere_drops_work_held_here(self) -> None:
        """When DELETE /collections ran in another process, this one drops its older work."""
        self.tick()
        self.assertEqual(self.drops, [])
        self.store.flushes += 1
        self.tick()
        self.assertEqual(len(self.drops), 1)
        self.tick()
        self.assertEqual(len(self.drops), 1)
