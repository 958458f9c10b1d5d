"""The process lease: heartbeats, taking over dead processes' work, flushes seen by all."""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.ownership import ProcessLease
from tests.fakes import FakeStore


class ProcessLeaseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = FakeStore()
        self.lease = ProcessLease(self.clock, self.store, "me", lease_seconds=10)
        self.looks: list[bool] = []
        self.drops: list[float] = []

        async def refill(look: bool) -> None:
            self.looks.append(look)

        self.lease.add_refiller(refill)
        self.lease.add_dropper(self.drops.append)

    def tick(self) -> None:
        self.successResultOf(ensureDeferred(self.lease.tick()))

    def test_heartbeat_renews_the_lease(self) -> None:
        """Each round writes this process's heartbeat, valid for the lease period."""
        self.tick()
        alive_until = self.store.process_docs["me"]["alive_until"]
        self.assertEqual(alive_until.replace(tzinfo=UTC).timestamp(), self.clock.seconds() + 10)

    def test_dead_process_work_is_released_and_looked_for(self) -> None:
        """A process whose heartbeat lapsed has its work released, and refillers look at once."""
        self.tick()
        self.clock.advance(1)
        self.store.process_docs["dead"] = {
            "_id": "dead",
            "alive_until": datetime.fromtimestamp(self.clock.seconds() - 5, tz=UTC),
        }
        self.tick()
        self.assertNotIn("dead", self.store.process_docs)
        self.assertEqual(self.looks, [True, True])

    def test_unowned_work_is_looked_for_once_per_lease(self) -> None:
        """Without a take-over, the expensive look for unowned work happens once per lease."""
        self.tick()
        self.clock.advance(5)
        self.tick()
        self.clock.advance(5)
        self.tick()
        self.assertEqual(self.looks, [True, False, True])

    def test_a_flush_elsewhere_drops_work_held_here(self) -> None:
        """When DELETE /collections ran in another process, this one drops its older work."""
        self.tick()
        self.assertEqual(self.drops, [])
        self.store.flushes += 1
        self.tick()
        self.assertEqual(len(self.drops), 1)
        self.tick()
        self.assertEqual(len(self.drops), 1)
