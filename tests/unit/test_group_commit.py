"""Group commit: batching, deadlines and per-item failures."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.storage.group_commit import Expired, GroupCommit


@dataclass
class Item:
    name: str
    error: BaseException | None = None


class Recorder:
    """A write function whose completion the test controls."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []
        self.pending: list[Deferred[None]] = []

    def __call__(self, batch: list[Item]) -> Deferred[None]:
        self.batches.append(batch)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.write = Recorder()
        self.sizes: list[int] = []
        self.commit: GroupCommit[Item] = GroupCommit(
            self.clock, self.write, max_batch=3, concurrency=1, on_batch=self.sizes.append
        )

    def test_items_of_one_turn_share_a_batch(self) -> None:
        """Items submitted in the same reactor turn are written in one batch, on the next turn."""
        a = self.commit.submit(Item("a"), deadline=10)
        b = self.commit.submit(Item("b"), deadline=10)
        self.assertEqual(self.write.batches, [])
        self.clock.advance(0)
        self.assertEqual([[i.name for i in batch] for batch in self.write.batches], [["a", "b"]])
        self.assertNoResult(a)
        self.write.pending[0].callback(None)
        self.assertIsNone(self.successResultOf(a))
        self.assertIsNone(self.successResultOf(b))

    def test_items_wait_for_a_free_slot_then_go_together(self) -> None:
        """While the only slot is busy, arrivals queue and then leave in batches of max_batch."""
        self.commit.submit(Item("first"), deadline=10)
        self.clock.advance(0)
        later = [self.commit.submit(Item(str(n)), deadline=10) for n in range(5)]
        self.clock.advance(0)
        self.assertEqual(len(self.write.batches), 1)
        self.write.pending[0].callback(None)
        self.clock.advance(0)
        self.assertEqual([len(b) for b in self.write.batches], [1, 3])
        self.write.pending[1].callback(None)
        self.clock.advance(0)
        self.assertEqual([len(b) for b in self.write.batches], [1, 3, 2])
        self.write.pending[2].callback(None)
        for d in later:
            self.successResultOf(d)
        self.assertEqual(self.sizes, [1, 3, 2])

    def test_one_failed_item_fails_only_its_request(self) -> None:
        """An item marked with an error by the writer fails alone; the others succeed."""
        good = self.commit.submit(Item("good"), deadline=10)
        bad_item = Item("bad")
        bad = self.commit.submit(bad_item, deadline=10)
        self.clock.advance(0)
        bad_item.error = ValueError("duplicate")
        self.write.pending[0].callback(None)
        self.successResultOf(good)
        self.failureResultOf(bad, ValueError)

    def test_whole_batch_failure_reaches_every_request(self) -> None:
        """When the write itself fails (database down), every item of the batch hears it."""
        ds = [self.commit.submit(Item(str(n)), deadline=10) for n in range(2)]
        self.clock.advance(0)
        self.write.pending[0].errback(ConnectionError("gone"))
        for d in ds:
            self.failureResultOf(d, ConnectionError)

    def test_expired_items_are_never_written(self) -> None:
        """An item whose requester already gave up is dropped unwritten (no save behind a 503)."""
        self.commit.submit(Item("busy"), deadline=10)
        self.clock.advance(0)
        late = self.commit.submit(Item("late"), deadline=self.clock.seconds() + 1)
        self.clock.advance(2)
        self.write.pending[0].callback(None)
        self.clock.advance(0)
        self.failureResultOf(late, Expired)
        self.assertEqual(len(self.write.batches), 1)
