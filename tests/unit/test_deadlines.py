"""Deadlines: one coarse tick instead of one timer per request."""

from __future__ import annotations

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.http.deadlines import Deadlines


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock, resolution=0.05)

    def test_late_deferred_fails_with_timeout(self) -> None:
        """A watched Deferred still waiting after its deadline fails with TimeoutError."""
        waiting: Deferred[int] = Deferred()
        self.deadlines.watch(waiting, 2.0)
        self.clock.advance(1.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.2)
        self.failureResultOf(waiting, TimeoutError)

    def test_answered_deferred_is_left_alone(self) -> None:
        """A result in time passes through untouched, and the tick stops once nothing waits."""
        waiting: Deferred[int] = Deferred()
        self.deadlines.watch(waiting, 2.0)
        waiting.callback(7)
        self.assertEqual(self.successResultOf(waiting), 7)
        self.clock.advance(0.1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_other_cancellation_is_not_a_timeout(self) -> None:
        """A cancellation for another reason (the client left) stays a CancelledError."""
        from twisted.internet.defer import CancelledError

        waiting: Deferred[int] = Deferred()
        self.deadlines.watch(waiting, 2.0)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)

    def test_stop_leaves_no_timer(self) -> None:
        """Stopping (service shutdown) leaves no pending call on the clock."""
        self.deadlines.watch(Deferred(), 2.0)
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
