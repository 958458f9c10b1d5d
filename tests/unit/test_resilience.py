"""Backoff and circuit breaker, driven by a Clock."""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from squad.background.resilience import Backoff, CircuitBreaker, CircuitOpen


class BackoffTests(SynchronousTestCase):
    def test_bound_doubles_up_to_the_cap(self) -> None:
        """The longest wait doubles with every attempt and never passes the cap."""
        backoff = Backoff(base=1, cap=10)
        self.assertEqual([backoff.bound(n) for n in range(1, 7)], [1, 2, 4, 8, 10, 10])

    def test_delay_is_jittered_within_the_upper_half(self) -> None:
        """Delays spread between half the bound and the bound, so retries do not align."""
        backoff = Backoff(base=1, cap=100, rng=random.Random(7))
        delays = [backoff.delay(4) for _ in range(200)]
        self.assertTrue(all(4 <= d <= 8 for d in delays))
        self.assertGreater(len({round(d, 3) for d in delays}), 100)

    def test_huge_attempt_numbers_do_not_overflow(self) -> None:
        """Retrying for days keeps a finite, capped delay."""
        self.assertEqual(Backoff(base=1, cap=300).bound(10_000), 300)


class CircuitBreakerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.breaker = CircuitBreaker(self.clock, threshold=3, cooldown=10)

    def fail_calls(self, times: int) -> None:
        for _ in range(times):
            self.breaker.before_call()
            self.breaker.failed()

    def test_opens_after_threshold_failures(self) -> None:
        """Three consecutive failures open the circuit: further calls are refused locally."""
        self.fail_calls(2)
        self.assertEqual(self.breaker.state, "closed")
        self.fail_calls(1)
        self.assertEqual(self.breaker.state, "open")
        self.assertRaises(CircuitOpen, self.breaker.before_call)

    def test_success_resets_the_count(self) -> None:
        """A success between failures keeps the circuit closed."""
        self.fail_calls(2)
        self.breaker.before_call()
        self.breaker.succeeded()
        self.fail_calls(2)
        self.assertEqual(self.breaker.state, "closed")

    def test_half_open_lets_one_trial_through(self) -> None:
        """After the cool-down exactly one trial call goes through; others are still refused."""
        self.fail_calls(3)
        self.clock.advance(10)
        self.assertEqual(self.breaker.state, "half-open")
        self.breaker.before_call()
        self.assertRaises(CircuitOpen, self.breaker.before_call)

    def test_trial_success_closes_and_failure_reopens(self) -> None:
        """The trial's result decides: success closes the circuit, failure opens it again."""
        self.fail_calls(3)
        self.clock.advance(10)
        self.breaker.before_call()
        self.breaker.failed()
        self.assertEqual(self.breaker.state, "open")
        self.clock.advance(10)
        self.breaker.before_call()
        self.breaker.succeeded()
        self.assertEqual(self.breaker.state, "closed")
