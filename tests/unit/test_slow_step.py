"""The background work after a 201: the slow step, its retries, the finishing writes, capacity
and adoption; and the HTTP verifier client with its circuit breaker. All on a ``Clock``."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from functools import partial
from typing import Any

from bson import ObjectId
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock, LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from squad.background import slow_step
from squad.background.finishing import FinishWriter
from squad.background.resilience import Backoff, CircuitBreaker, CircuitOpen
from squad.background.slow_step import SlowWork
from squad.background.verification import (
    TIMER_SLOT_SECONDS,
    HttpVerification,
    StandInVerification,
    VerificationFailed,
)
from squad.runtime.service_tree import recording_work
from squad.storage.documents import bson_now
from squad.storage.store import UNOWNED, FinishRound, PendingSignup
from tests.fakes import OWNER, START, FakeStore, ManualVerification, StoreDown, quick_hasher

INTERVAL = 0.2  # the FinishWriter's batching interval in these tests


class StandInVerificationTests(SynchronousTestCase):
    def test_waits_between_min_and_max_on_the_clock(self) -> None:
        """The stand-in finishes after a wait drawn within [min, max], measured on the clock."""
        waits = set()
        for seed in range(50):
            clock = Clock()
            verification = StandInVerification(clock, 5, 15, rng=random.Random(seed))
            done = ensureDeferred(verification.verify(ObjectId()))
            (call,) = clock.getDelayedCalls()
            wait = call.getTime()
            self.assertTrue(5 <= wait <= 15, wait)
            waits.add(round(wait, 3))
            clock.advance(wait - 0.001)
            self.assertNoResult(done)
            clock.advance(0.001)
            self.assertIsNone(self.successResultOf(done))
        self.assertGreater(len(waits), 40)  # really drawn, not a constant

    def test_equal_bounds_wait_exactly_that_long(self) -> None:
        """With min == max the wait is exactly that many seconds (0 included)."""
        for seconds in (0.0, 3.0):
            clock = Clock()
            done = ensureDeferred(StandInVerification(clock, seconds, seconds).verify(ObjectId()))
            if seconds:
                clock.advance(seconds - 0.001)
                self.assertNoResult(done)
            clock.advance(0.001 if seconds else 0)
            self.successResultOf(done)

    def test_cancelling_stops_the_wait(self) -> None:
        """A cancelled stand-in fails with CancelledError and leaves no timer behind."""
        clock = Clock()
        done = ensureDeferred(StandInVerification(clock, 5, 15).verify(ObjectId()))
        done.cancel()
        self.failureResultOf(done, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])


class StandInSlotTests(SynchronousTestCase):
    def test_many_waits_share_few_timers_and_none_ends_early(self) -> None:
        """A thousand pending stand-in steps cost one reactor timer, not a thousand; each ends
        no earlier than its drawn wait and at most one timer slot later."""
        clock = Clock()
        rng = random.Random(7)
        drawn = random.Random(7)
        verification = StandInVerification(clock, 5, 15, rng=rng)
        waits = []
        for _ in range(1000):
            waits.append((drawn.uniform(5, 15), verification.verify(ObjectId())))
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(verification.waiting, 1000)
        ended: dict[int, float] = {}
        for index, (_, done) in enumerate(waits):

            def record(result: None, index: int = index) -> None:
                ended.setdefault(index, clock.seconds())

            done.addCallback(record)
        while clock.getDelayedCalls():
            clock.advance(0.01)
        self.assertEqual(len(ended), 1000)
        for index, (wait, _) in enumerate(waits):
            self.assertGreaterEqual(ended[index], wait - 1e-6)
            self.assertLessEqual(ended[index], wait + TIMER_SLOT_SECONDS + 0.01 + 1e-6)
        self.assertEqual(verification.waiting, 0)

    def test_cancelled_waits_are_skipped_and_the_last_leaves_no_timer(self) -> None:
        """A cancelled wait fails with CancelledError and is skipped when its slot fires; the
        others still finish; once every wait is cancelled no timer is left."""
        clock = Clock()
        verification = StandInVerification(clock, 5, 5)
        first, second = verification.verify(ObjectId()), verification.verify(ObjectId())
        first.cancel()
        self.failureResultOf(first, CancelledError)
        clock.advance(5)
        self.successResultOf(second)
        third = verification.verify(ObjectId())
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        third.cancel()
        self.failureResultOf(third, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(verification.waiting, 0)


class SlowWorkTestCase(SynchronousTestCase):
    """A started ``SlowWork`` on a fake store, a Clock and a hand-driven verification."""

    capacity = 100

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = FakeStore()
        self.verification = ManualVerification()
        self.writer = FinishWriter(self.clock, self.store, interval=INTERVAL)
        self.backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
        # What the slow work tells the hasher of adopted batches; a test may route it elsewhere.
        self.adopted: list[tuple[ObjectId, int]] = []
        self.on_adopted: Callable[[ObjectId, int], None] = lambda batch_id, size: (
            self.adopted.append((batch_id, size))
        )
        self.work = SlowWork(
            self.clock,
            self.store,
            self.verification,
            self.writer,
            OWNER,
            capacity=self.capacity,
            backoff=self.backoff,
            on_adopted=self.tell_adopted,
        )
        self.work.startService()
        self.addCleanup(self.work.stopService)

    def tell_adopted(self, batch_id: ObjectId, size: int) -> None:
        self.on_adopted(batch_id, size)

    def accept_batch(self, size: int = 1) -> tuple[ObjectId, list[ObjectId]]:
        """Sign-ups as the API and the group commit make them: reserve, store one batch, then
        accept each user after its answer."""
        for _ in range(size):
            self.assertEqual(self.work.owner_for_new_signup(), OWNER)
        user_ids = [self.store.seed_user(owner=None) for _ in range(size)]
        # A batch of this process's own: its passwords document is the record of its steps.
        batch_id = self.store.seed_sealed([(user_id, b"s") for user_id in user_ids], OWNER)
        self.work.batch_stored(batch_id, OWNER, user_ids)
        for user_id in user_ids:
            self.work.accept(user_id)
        return batch_id, user_ids

    def accept_new(self) -> ObjectId:
        return self.accept_batch(1)[1][0]

    def flush(self) -> None:
        self.clock.advance(INTERVAL)


class SlowStepTests(SlowWorkTestCase):
    def test_processed_is_written_only_after_the_stand_in_wait(self) -> None:
        """With the stand-in, processed: true and a new date_updated reach the store only
        after the wait, through the finishing writer; the batch's work document stays for
        the hasher."""
        self.successResultOf(self.work.stopService())
        verification = StandInVerification(self.clock, 5, 5)
        self.writer = FinishWriter(self.clock, self.store, interval=INTERVAL)
        work = SlowWork(self.clock, self.store, verification, self.writer, "other")
        work.startService()
        self.addCleanup(work.stopService)
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_sealed([(user_id, b"s")], "other")
        work.batch_stored(batch_id, work.owner_for_new_signup(), [user_id])
        work.accept(user_id)
        self.clock.pump([INTERVAL] * 24)  # 4.8 s
        self.assertIs(self.store.user_docs[user_id]["processed"], False)
        self.assertEqual(self.store.called("apply_finishes"), 0)
        self.clock.advance(0.2)  # the wait ends: 5 s
        self.flush()
        user = self.store.user_docs[user_id]
        self.assertIs(user["processed"], True)
        self.assertEqual(user["date_updated"], bson_now(START + 5))
        # A first-try success records nothing else: the update stays processed and the date.
        self.assertEqual(
            [args[0].processed for name, args in self.store.calls if name == "apply_finishes"],
            [{0: [user_id]}],
        )
        self.assertNotIn("verification_state", user)
        self.assertEqual(list(self.store.sealed_docs), [batch_id])
        self.assertEqual(work.completed, 1)

    def test_nothing_starts_before_the_answer_is_out(self) -> None:
        """A stored batch is held (its slots count) but no step starts until accept."""
        user_id = self.store.seed_user(owner=None)
        self.work.owner_for_new_signup()
        self.work.batch_stored(self.store.seed_pending([user_id], OWNER), OWNER, [user_id])
        self.assertEqual((self.work.held, self.verification.calls), (1, []))
        self.work.accept(user_id)
        self.work.accept(user_id)  # a second accept starts nothing more
        self.assertEqual(self.verification.calls, [user_id])

    def test_nothing_is_written_while_the_step_runs(self) -> None:
        """While the verification has not answered, the store sees no write for the user."""
        batch_id, _ = self.accept_batch()
        self.clock.pump([INTERVAL] * 50)
        self.assertEqual(self.store.called("apply_finishes"), 0)
        self.assertIn(batch_id, self.store.sealed_docs)
        self.assertEqual(self.work.running_steps, 1)

    def test_the_batch_document_goes_after_its_last_user_is_written(self) -> None:
        """A batch's work document stays while any of its users' steps runs, even once its
        passwords are hashed, and is deleted in the round that writes its last user, after
        that user's update."""
        batch_id, (first, second) = self.accept_batch(2)
        self.verification.succeed(index=0)
        self.work.passwords_done(batch_id)
        self.flush()
        self.assertIs(self.store.user_docs[first]["processed"], True)
        self.assertIn(batch_id, self.store.sealed_docs)
        self.verification.succeed(index=1)
        self.flush()
        self.assertNotIn(batch_id, self.store.sealed_docs)
        events = self.store.events
        self.assertLess(events.index(("update", second)), events.index(("delete_sealed", batch_id)))

    def test_a_batch_whose_steps_ended_goes_once_its_passwords_are_hashed(self) -> None:
        """When the steps end first (under load), the work document waits for the hasher,
        and goes in the round after it says the batch is hashed."""
        batch_id, _ = self.accept_batch(2)
        self.verification.succeed(index=0)
        self.verification.succeed(index=1)
        self.flush()
        self.assertIn(batch_id, self.store.sealed_docs)
        self.work.passwords_done(batch_id)
        self.flush()
        self.assertNotIn(batch_id, self.store.sealed_docs)
        self.assertEqual(self.store.pending_docs, {})

    def test_an_adopted_batch_leaves_its_passwords_document_to_the_hasher(self) -> None:
        """A batch adopted from a pending document is finished with that document; its
        passwords document goes as soon as its passwords are hashed, steps running or not."""
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([user_id], "dead")
        self.store.seed_sealed([(user_id, b"s")], OWNER, batch_id)
        self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.work.passwords_done(batch_id)
        self.flush()
        self.assertNotIn(batch_id, self.store.sealed_docs)
        self.assertIn(batch_id, self.store.pending_docs)
        self.verification.succeed()
        self.flush()
        self.assertNotIn(batch_id, self.store.pending_docs)

    def test_users_verified_together_share_one_update(self) -> None:
        """Users whose steps end in the same round go out as one update of all of them."""
        _, user_ids = self.accept_batch(3)
        for index in range(3):
            self.verification.succeed(index=index)
        self.flush()
        (round, _) = next(args for name, args in self.store.calls if name == "apply_finishes")
        self.assertEqual(round.processed, {0: user_ids})
        self.assertEqual(round.fields, {})

    def test_the_slow_step_never_waits_for_a_password_hash(self) -> None:
        """Nothing about hashing holds the slow step back: with no hasher at all, every user
        is processed and nothing is held (the work documents wait for the hasher)."""
        batches = [self.accept_batch(2)[0] for _ in range(3)]
        for index in range(6):
            self.verification.succeed(index=index)
        self.flush()
        self.assertTrue(all(user["processed"] for user in self.store.user_docs.values()))
        self.assertEqual(set(self.store.sealed_docs), set(batches))
        self.assertEqual(self.work.held, 0)

    def test_failed_verification_is_retried_with_backoff_and_recorded(self) -> None:
        """A failed attempt records verification_state "retrying" in the store (top-level
        fields: the attempts, the last error and when), then the step waits the backoff delay
        (not less) and tries again; success then processes the user and records "verified"
        with the number of attempts."""
        user_id = self.accept_new()
        delay = Backoff(base=1.0, cap=8.0, rng=random.Random(3)).delay(1)
        self.assertTrue(0.5 <= delay <= 1.0)
        self.verification.fail(VerificationFailed("the verifier answered HTTP 502"))
        self.assertEqual(self.work.failed_attempts, 1)
        self.clock.advance(delay - 0.01)
        self.assertEqual(len(self.verification.calls), 1)
        self.assertLess(delay - 0.01, INTERVAL * 5)
        self.clock.advance(0.01)
        self.assertEqual(self.verification.calls, [user_id, user_id])
        self.flush()
        recorded = self.store.user_docs[user_id]
        self.assertEqual(recorded["verification_state"], "retrying")
        self.assertEqual(recorded["verification_attempts"], 1)
        self.assertEqual(recorded["verification_error"], "the verifier answered HTTP 502")
        self.assertEqual(recorded["verification_attempted_at"], bson_now(START))
        self.assertIs(self.store.user_docs[user_id]["processed"], False)
        self.verification.succeed()
        self.flush()
        user = self.store.user_docs[user_id]
        self.assertIs(user["processed"], True)
        self.assertEqual(
            (user["verification_state"], user["verification_attempts"]), ("verified", 2)
        )

    def test_backoff_grows_between_attempts(self) -> None:
        """Successive failures wait longer and longer (within the backoff's bounds)."""
        self.accept_new()
        for attempt in range(1, 5):
            self.verification.fail(RuntimeError(f"failure {attempt}"))
            (timer,) = [
                call
                for call in self.clock.getDelayedCalls()
                if not isinstance(getattr(call, "func", None), LoopingCall)  # the writer's
            ]
            wait = timer.getTime() - self.clock.seconds()
            self.assertTrue(self.backoff.bound(attempt) / 2 <= wait <= self.backoff.bound(attempt))
            self.clock.advance(wait)
            self.assertEqual(len(self.verification.calls), attempt + 1)
        self.assertEqual(self.work.failed_attempts, 4)

    def test_a_batch_whose_users_all_failed_to_store_is_not_held(self) -> None:
        """A batch written for users whose own inserts all failed holds nothing to do: its
        slots are freed and no step starts (its document goes with its passwords, which
        nobody needs)."""
        self.work.owner_for_new_signup()
        batch_id = self.store.seed_sealed([(ObjectId(), b"s")], OWNER)
        self.work.signup_failed(OWNER)
        self.work.batch_stored(batch_id, OWNER, [])
        self.work.passwords_done(batch_id)
        self.flush()
        self.assertNotIn(batch_id, self.store.sealed_docs)
        self.assertEqual((self.work.held, self.verification.calls), (0, []))

    def test_stopping_cancels_the_steps_and_writes_what_finished(self) -> None:
        """stopService cancels running steps (their work stays pending for a successor) and
        makes a last attempt to write what already finished."""
        done_batch, (done,) = self.accept_batch()
        running_batch, _ = self.accept_batch()
        self.verification.succeed(index=0)
        self.successResultOf(self.work.stopService())
        self.assertIs(self.store.user_docs[done]["processed"], True)
        self.assertEqual(set(self.store.sealed_docs), {done_batch, running_batch})
        self.assertEqual(self.work.running_steps, 0)
        self.assertTrue(self.verification.waiting[1].called)
        self.assertEqual(self.work.owner_for_new_signup(), UNOWNED)

    def test_stopping_records_in_pending_the_steps_its_passwords_documents_alone_held(
        self,
    ) -> None:
        """At a graceful stop, the users whose steps are still to run in batches recorded only
        by their passwords' documents are set down in pending, under this process, so that
        whoever takes over adopts them at once; finished users are left out."""
        batch_id, (done, running) = self.accept_batch(2)
        self.verification.succeed(index=0)
        self.successResultOf(self.work.stopService())
        self.assertEqual(
            self.store.pending_docs[batch_id],
            {"_id": batch_id, "owner": OWNER, "users": [running]},
        )
        self.assertIs(self.store.user_docs[done]["processed"], True)

    def test_a_stop_that_cannot_record_the_steps_still_stops(self) -> None:
        """When the database refuses that record at the stop, the stop still completes (the
        take-over of the batch's passwords records the steps instead)."""
        self.accept_batch(1)
        self.store.make_fail("record_steps")
        self.successResultOf(self.work.stopService())
        self.assertEqual(self.store.pending_docs, {})
        self.flushLoggedErrors()

    def test_drop_all_forgets_the_work_and_its_writes(self) -> None:
        """drop_all cancels every step and forgets queued writes; nothing is retried."""
        self.accept_new()
        self.verification.fail(RuntimeError("down"))
        self.work.drop_all()
        self.assertEqual((self.work.held, self.work.running_steps, self.writer.backlog), (0, 0, 0))
        self.clock.advance(600)
        self.assertEqual(len(self.verification.calls), 1)
        self.assertEqual(self.store.called("apply_finishes"), 0)

    def test_the_oldest_age_is_the_oldest_batch_held(self) -> None:
        """oldest_age is the time since the oldest batch still held was taken on."""
        self.assertEqual(self.work.oldest_age(), 0.0)
        self.accept_batch()
        self.clock.advance(3)
        self.accept_batch()
        self.clock.advance(2)
        self.assertEqual(self.work.oldest_age(), 5.0)
        self.verification.succeed(index=0)
        self.assertEqual(self.work.oldest_age(), 2.0)


class UncertainWriteTests(SlowWorkTestCase):
    def test_a_batch_that_landed_despite_a_failed_write_is_taken_on(self) -> None:
        """When a batch's write failed as a whole but its documents landed (a timeout does
        not undo a write), the next refill finds it, runs its users' slow steps and hands its
        passwords to this process's hasher."""
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([user_id], OWNER)
        self.store.seed_sealed([(user_id, b"s")], OWNER, batch_id)
        self.work.batch_uncertain(batch_id, OWNER, 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual(self.verification.calls, [user_id])
        self.assertEqual(self.adopted, [(batch_id, 1)])
        self.verification.succeed()
        self.flush()
        self.assertNotIn(batch_id, self.store.pending_docs)
        self.assertIn(batch_id, self.store.sealed_docs)  # until the hasher is done with it

    def test_a_batch_that_never_landed_is_looked_for_a_while_then_forgotten(self) -> None:
        """A failed batch not in the database is looked for at each refill for
        UNCERTAIN_SECONDS (it may still land), then no more, and its passwords' document,
        should it land later, is deleted (no user of the batch can have been stored)."""
        batch_id = ObjectId()
        self.work.batch_uncertain(batch_id, OWNER, 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.clock.advance(slow_step.UNCERTAIN_SECONDS + 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual(self.store.called("find_work"), 2)
        self.flush()
        self.assertIn(("delete_sealed", batch_id), self.store.events)
        self.assertEqual(self.adopted, [])

    def test_a_batch_recorded_by_its_passwords_alone_is_found_and_taken_on(self) -> None:
        """A failed batch of this process's own whose passwords document and users landed is
        found by that document: its steps run here, its passwords are hashed here, and the
        document stays until both are done."""
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_sealed([(user_id, b"s")], OWNER)
        self.work.batch_uncertain(batch_id, OWNER, 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual(self.verification.calls, [user_id])
        self.assertEqual(self.adopted, [(batch_id, 1)])
        self.work.passwords_done(batch_id)
        self.flush()
        self.assertIn(batch_id, self.store.sealed_docs)
        self.verification.succeed()
        self.flush()
        self.assertEqual((self.store.sealed_docs, self.store.pending_docs), ({}, {}))

    def test_a_landed_batch_without_stored_users_leaves_nothing_behind(self) -> None:
        """A failed batch found with none of its users stored runs no step, hashes nothing,
        and both its documents go."""
        batch_id = self.store.seed_pending([ObjectId()], OWNER)
        self.store.seed_sealed([(ObjectId(), b"s")], OWNER, batch_id)
        self.work.batch_uncertain(batch_id, OWNER, 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.flush()
        self.assertEqual((self.verification.calls, self.adopted), ([], []))
        self.assertEqual((self.store.pending_docs, self.store.sealed_docs), ({}, {}))

    def test_an_unowned_batch_is_hashed_here_and_its_steps_left_to_the_pool(self) -> None:
        """A failed batch stored unowned (this process had no room) is not taken on when it
        is found, but its passwords are this process's to hash; not found in time, it is
        handed to the hasher all the same (it may have been adopted and finished meanwhile,
        and the hasher skips a batch that is gone)."""
        user_id = self.store.seed_user(owner=None)
        found = self.store.seed_pending([user_id], UNOWNED)
        self.work.batch_uncertain(found, UNOWNED, 1)
        missing = ObjectId()
        self.work.batch_uncertain(missing, UNOWNED, 3)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual((self.verification.calls, self.adopted), ([], [(found, 1)]))
        self.assertEqual(self.store.pending_docs[found]["owner"], UNOWNED)
        self.clock.advance(slow_step.UNCERTAIN_SECONDS + 1)
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual(self.adopted, [(found, 1), (missing, 3)])


class CapacityTests(SlowWorkTestCase):
    capacity = 2

    def test_new_signups_are_unowned_when_full(self) -> None:
        """Past capacity (reserved slots included), owner_for_new_signup answers UNOWNED."""
        self.assertEqual(self.work.owner_for_new_signup(), OWNER)
        self.assertEqual(self.work.owner_for_new_signup(), OWNER)
        self.assertEqual(self.work.owner_for_new_signup(), UNOWNED)
        self.assertEqual(UNOWNED, "")

    def test_storing_unowned_work_is_remembered_for_the_lease(self) -> None:
        """Reserving slots leaves no mark; the first sign-up stored unowned records when, so
        the lease's heartbeat can tell the other processes to look for it."""
        self.work.owner_for_new_signup()
        self.work.owner_for_new_signup()
        self.assertIsNone(self.work.unowned_written_at)
        self.clock.advance(7)
        self.work.owner_for_new_signup()
        self.assertEqual(self.work.unowned_written_at, self.clock.seconds())

    def test_a_failed_signup_frees_its_slot(self) -> None:
        """A reservation whose write failed is given back; an unowned one changes nothing."""
        first = self.work.owner_for_new_signup()
        self.work.owner_for_new_signup()
        self.work.signup_failed(UNOWNED)
        self.assertEqual(self.work.held, 2)
        self.work.signup_failed(first)
        self.assertEqual(self.work.held, 1)
        self.assertEqual(self.work.owner_for_new_signup(), OWNER)

    def test_unowned_batches_are_not_held_here(self) -> None:
        """A batch stored as unowned is not held or started: it waits for adoption."""
        user_id = self.store.seed_user(owner=None)
        self.work.batch_stored(self.store.seed_pending([user_id], UNOWNED), UNOWNED, [user_id])
        self.work.accept(user_id)
        self.assertEqual(self.verification.calls, [])
        self.assertEqual(self.work.held, 0)

    def test_finished_work_frees_capacity(self) -> None:
        """Once work finishes, its slot is free for a new sign-up."""
        self.accept_new()
        self.accept_new()
        self.assertEqual(self.work.owner_for_new_signup(), UNOWNED)
        self.verification.succeed(index=0)
        self.assertEqual(self.work.held, 1)
        self.assertEqual(self.work.owner_for_new_signup(), OWNER)

    def test_a_stopped_process_takes_no_new_work(self) -> None:
        """A process that is not running leaves every new sign-up to the pool."""
        self.successResultOf(self.work.stopService())
        self.assertEqual(self.work.owner_for_new_signup(), UNOWNED)


class RefillTests(SlowWorkTestCase):
    capacity = 400

    def owners(self) -> dict[ObjectId, str]:
        return {batch_id: doc["owner"] for batch_id, doc in self.store.pending_docs.items()}

    def test_refill_adopts_unowned_batches_as_room_allows(self) -> None:
        """refill takes unowned batches from the store round after round, each asking for no
        more batches than its room could hold at the largest batch size, and starts each
        adopted user's step."""
        batches = [
            self.store.seed_pending([self.store.seed_user(owner=None)], UNOWNED) for _ in range(4)
        ]
        self.accept_new()
        self.successResultOf(ensureDeferred(self.work.refill()))
        asked = [args[1] for name, args in self.store.calls if name == "adopt"]
        self.assertEqual(asked[0], (self.capacity - 1) // slow_step.USERS_PER_BATCH)
        self.assertEqual(set(self.owners().values()), {OWNER})
        self.assertEqual(len(self.verification.calls), 1 + len(batches))

    def test_refill_does_not_ask_when_full(self) -> None:
        """A full process does not even query the store."""
        self.store.seed_user()
        self.accept_batch(self.capacity)
        self.successResultOf(ensureDeferred(self.work.refill()))
        self.assertEqual(self.store.called("adopt"), 0)

    def test_adopted_batches_resume_where_they_stood(self) -> None:
        """Users of an adopted batch already processed are not verified again; a batch whose
        users are all processed is just deleted."""
        done = self.store.seed_user(owner=None, processed=True)
        waiting = self.store.seed_user(owner=None)
        mixed = self.store.seed_pending([done, waiting], UNOWNED)
        finished = self.store.seed_pending([done], UNOWNED)
        self.successResultOf(ensureDeferred(self.work.refill()))
        self.assertEqual(self.verification.calls, [waiting])
        self.flush()
        self.assertNotIn(finished, self.store.pending_docs)
        self.assertIn(mixed, self.store.pending_docs)
        self.verification.succeed()
        self.flush()
        self.assertNotIn(mixed, self.store.pending_docs)

    def test_adopting_a_batch_leaves_its_passwords_to_the_hashers_take_over(self) -> None:
        """Taking over a dead process's slow steps touches nothing of its sealed passwords:
        they are split among the live processes' hashers separately; the steps end with the
        pending document's deletion alone, and a resumed user records its attempts."""
        user_id = self.store.seed_user(owner="dead")
        (batch_id,) = self.store.pending_docs
        self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.assertEqual(self.adopted, [])
        self.verification.succeed()
        self.flush()
        self.assertNotIn(batch_id, self.store.pending_docs)
        self.assertEqual(self.store.sealed_docs[batch_id]["owner"], "dead")
        self.assertEqual(self.store.user_docs[user_id]["verification_state"], "verified")

    def test_an_older_versions_batch_carries_its_unhashed_passwords_over_once(self) -> None:
        """A pending batch left by an older squad, its sealed passwords inside: adopting it
        copies those not hashed yet to sealed_passwords, once, under this process, whose
        hasher is told; when its slow steps end, its pending document goes and nothing more
        is copied."""
        hashed = self.store.seed_user(owner=None, password_hash="$argon2id$h")
        waiting = self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([hashed, waiting], "dead", [b"s1", b"s2"])
        self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.assertEqual(self.adopted, [(batch_id, 1)])
        self.assertEqual(self.store.sealed_docs[batch_id]["users"], [waiting])
        self.assertEqual(self.store.sealed_docs[batch_id]["sealed"], [b"s2"])
        self.assertEqual(self.store.sealed_docs[batch_id]["owner"], OWNER)
        self.verification.succeed(index=0)
        self.verification.succeed(index=1)
        self.flush()
        self.assertNotIn(batch_id, self.store.pending_docs)
        self.assertEqual(self.store.events.count(("carry_sealed", batch_id)), 1)

    def test_refill_adopts_round_after_round_until_room_runs_out(self) -> None:
        """A dead owner's batches are adopted round after round without waiting for the next
        lease round; when room runs out, refill says it did not see everything."""
        self.patch(slow_step, "USERS_PER_BATCH", 1)
        self.patch(slow_step, "ADOPT_PER_ROUND", 150)
        batches = [
            self.store.seed_pending([self.store.seed_user(owner=None)], "dead") for _ in range(450)
        ]
        seen_all = self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.assertFalse(seen_all)
        self.assertEqual(self.store.called("adopt"), 3)
        self.assertEqual(self.work.held, 400)
        self.assertEqual(sum(self.owners()[b] == "dead" for b in batches), 50)

    def test_refill_reports_all_seen_after_a_short_round(self) -> None:
        """A round that comes back short means nothing more of those owners is waiting."""
        dead = [
            self.store.seed_pending([self.store.seed_user(owner=None)], "dead") for _ in range(2)
        ]
        alive = self.store.seed_pending([self.store.seed_user(owner=None)], "alive")
        seen_all = self.successResultOf(ensureDeferred(self.work.refill(["dead"])))
        self.assertTrue(seen_all)
        self.assertEqual([self.owners()[b] for b in dead], [OWNER, OWNER])
        self.assertEqual(self.owners()[alive], "alive")

    def test_refill_without_owners_asks_nothing(self) -> None:
        """Between lease looks, a process without overflow of its own does not query."""
        self.store.seed_user()
        self.assertTrue(self.successResultOf(ensureDeferred(self.work.refill([]))))
        self.assertEqual(self.store.called("adopt"), 0)

    def test_a_failed_adoption_leaves_the_work_unowned(self) -> None:
        """When the store fails, refill fails and nothing is started or claimed."""
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([user_id], UNOWNED)
        self.store.make_fail("adopt", times=1)
        self.failureResultOf(ensureDeferred(self.work.refill()), StoreDown)
        self.assertEqual(self.work.held, 0)
        self.assertEqual(self.owners()[batch_id], UNOWNED)
        self.successResultOf(ensureDeferred(self.work.refill()))
        self.assertEqual(self.verification.calls, [user_id])


class FinishWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FakeStore()
        self.writer = FinishWriter(self.clock, self.store, interval=INTERVAL)
        self.writer.start()
        self.addCleanup(self.writer.stop)

    def rounds(self) -> list[FinishRound]:
        return [args[0] for name, args in self.store.calls if name == "apply_finishes"]

    def test_writes_everything_queued_on_the_interval_in_one_round(self) -> None:
        """Updates wait for the interval, then all of them go out in one round: no throttle
        can leave finished work behind while sign-ups flow."""
        ids = [self.store.seed_user(owner=None) for _ in range(2000)]
        for user_id in ids:
            self.writer.processed(user_id, 1)
        self.clock.advance(INTERVAL - 0.01)
        self.assertEqual(self.store.called("apply_finishes"), 0)
        self.clock.advance(0.01)
        (round,) = self.rounds()
        self.assertEqual(round.processed, {1: ids})
        self.assertEqual((self.writer.written, self.writer.backlog), (2000, 0))

    def test_a_user_hashed_and_verified_in_one_round_is_one_update(self) -> None:
        """A user with a password hash and a verified step in the same round gets both in one
        update, so neither overwrites the other."""
        user_id = self.store.seed_user(owner=None)
        self.writer.processed(user_id, 2)
        self.writer.set_fields(user_id, {"password_hash": "$argon2id$h"})
        self.clock.advance(INTERVAL)
        (round,) = self.rounds()
        self.assertEqual(round.processed, {})
        self.assertEqual(
            round.fields,
            {
                user_id: {
                    "password_hash": "$argon2id$h",
                    "processed": True,
                    "verification_state": "verified",
                    "verification_attempts": 2,
                }
            },
        )
        user = self.store.user_docs[user_id]
        self.assertEqual(user["password_hash"], "$argon2id$h")
        self.assertIs(user["processed"], True)
        self.assertEqual(user["date_updated"], bson_now(INTERVAL))

    def test_requeues_on_failure_and_retries(self) -> None:
        """A failed write keeps its updates and deletions queued; the next round retries."""
        user_id = self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([user_id], OWNER)
        self.writer.processed(user_id)
        self.writer.pending_done(batch_id)
        self.store.make_fail("apply_finishes", times=2)
        self.clock.advance(INTERVAL)
        self.clock.advance(INTERVAL)
        self.assertEqual(self.store.called("apply_finishes"), 2)
        self.assertEqual(self.writer.backlog, 2)
        self.assertIn(batch_id, self.store.pending_docs)
        self.clock.advance(INTERVAL)
        self.assertIs(self.store.user_docs[user_id]["processed"], True)
        self.assertNotIn(batch_id, self.store.pending_docs)
        self.assertEqual(self.writer.backlog, 0)
        self.flushLoggedErrors(StoreDown)

    def test_requeued_updates_never_overwrite_newer_ones(self) -> None:
        """Fields set while a failing write was in flight win over the re-queued old ones."""
        user_id = self.store.seed_user()
        self.writer.set_fields(user_id, {"verification_state": "retrying", "a": 1})
        self.store.make_hang("apply_finishes")
        self.clock.advance(INTERVAL)
        self.writer.set_fields(user_id, {"verification_state": "later"})
        self.store.heal()
        self.store.hung("apply_finishes")[0].errback(Failure(StoreDown("lost")))
        self.clock.advance(INTERVAL)
        user = self.store.user_docs[user_id]
        self.assertEqual(user["verification_state"], "later")
        self.assertEqual(user["a"], 1)

    def test_deletions_follow_the_updates_of_their_round(self) -> None:
        """In a round, the users' updates are applied before any work document is deleted."""
        user_id = self.store.seed_user(owner=None)
        pending = self.store.seed_pending([user_id], OWNER)
        sealed = self.store.seed_sealed([(user_id, b"s")], OWNER)
        self.writer.set_fields(user_id, {"password_hash": "$argon2id$h"})
        self.writer.sealed_done(sealed)
        self.writer.processed(user_id)
        self.writer.pending_done(pending)
        self.clock.advance(INTERVAL)
        self.assertEqual(
            self.store.events[-3:],
            [("update", user_id), ("delete_pending", pending), ("delete_sealed", sealed)],
        )

    def test_a_batchs_two_documents_go_each_when_its_own_work_ends(self) -> None:
        """A batch whose slow steps end before its hashes loses its pending document alone,
        and nothing is copied; its sealed passwords' document goes once they are hashed. The
        other way round (hashes first, at low load) works the same."""
        for steps_first in (True, False):
            user_id = self.store.seed_user(owner=OWNER)
            (batch_id,) = self.store.pending_docs
            if steps_first:
                self.writer.processed(user_id)
                self.writer.pending_done(batch_id)
            else:
                self.writer.set_fields(user_id, {"password_hash": "$argon2id$h"})
                self.writer.sealed_done(batch_id)
            self.clock.advance(INTERVAL)
            first = self.rounds()[-1]
            self.assertEqual(
                (first.pending_done, first.sealed_done),
                ([batch_id], []) if steps_first else ([], [batch_id]),
            )
            self.assertEqual(
                (batch_id in self.store.pending_docs, batch_id in self.store.sealed_docs),
                (False, True) if steps_first else (True, False),
            )
            if steps_first:
                self.writer.set_fields(user_id, {"password_hash": "$argon2id$h"})
                self.writer.sealed_done(batch_id)
            else:
                self.writer.processed(user_id)
                self.writer.pending_done(batch_id)
            self.clock.advance(INTERVAL)
            self.assertEqual((self.store.pending_docs, self.store.sealed_docs), ({}, {}))

    def test_the_deletions_of_a_round_share_one_message_per_collection(self) -> None:
        """The batches finished in one round are deleted together: one list per collection,
        in the order they finished."""
        batches = [ObjectId() for _ in range(3)]
        for batch_id in batches:
            self.writer.pending_done(batch_id)
            self.writer.sealed_done(batch_id)
        self.clock.advance(INTERVAL)
        (round,) = self.rounds()
        self.assertEqual((round.pending_done, round.sealed_done), (batches, batches))

    def test_a_failed_round_deletes_nothing_and_is_retried_whole(self) -> None:
        """When a round fails, its users' updates and its deletions wait together: the next
        round writes the updates again, then deletes."""
        user_id = self.store.seed_user(owner=OWNER)
        (batch_id,) = self.store.pending_docs
        self.writer.processed(user_id)
        self.writer.pending_done(batch_id)
        self.writer.set_fields(user_id, {"password_hash": "$argon2id$h"})
        self.writer.sealed_done(batch_id)
        self.store.make_fail("apply_finishes", times=1)
        self.clock.advance(INTERVAL)
        self.assertEqual(set(self.store.pending_docs), set(self.store.sealed_docs))
        self.assertIn(batch_id, self.store.pending_docs)
        self.clock.advance(INTERVAL)
        self.assertEqual((self.store.pending_docs, self.store.sealed_docs), ({}, {}))
        self.assertEqual(self.store.user_docs[user_id]["password_hash"], "$argon2id$h")
        self.flushLoggedErrors(StoreDown)

    def test_stop_makes_a_last_attempt(self) -> None:
        """stop writes what is queued at once, without waiting for the interval."""
        user_id = self.store.seed_user()
        self.writer.processed(user_id, 1)
        self.successResultOf(self.writer.stop())
        self.assertIs(self.store.user_docs[user_id]["processed"], True)

    def test_stop_waits_for_the_write_in_flight_before_the_last_one(self) -> None:
        """A stop during a write does not start a second write beside it: it ends when the
        write in flight has ended and the last attempt has sent what was queued meanwhile,
        and a batch's document goes only after its users' updates are acknowledged."""
        first, second = self.store.seed_user(owner=None), self.store.seed_user(owner=None)
        batch_id = self.store.seed_pending([first, second], OWNER)
        self.writer.processed(first, 1)
        self.store.make_hang("apply_finishes")
        self.clock.advance(INTERVAL)
        self.writer.processed(second)
        self.writer.pending_done(batch_id)
        stopped = self.writer.stop()
        self.assertNoResult(stopped)
        self.assertEqual(self.store.called("apply_finishes"), 1)
        self.assertIn(batch_id, self.store.pending_docs)
        self.store.heal()
        self.store.hung("apply_finishes")[0].callback(None)
        self.successResultOf(stopped)
        last = self.rounds()[-1]
        self.assertEqual((last.processed, last.pending_done), ({0: [second]}, [batch_id]))
        self.assertNotIn(batch_id, self.store.pending_docs)
        self.assertIs(self.store.user_docs[second]["processed"], True)

    def test_a_failed_last_attempt_does_not_fail_the_stop(self) -> None:
        """When the database is down at stop, the stop still completes (work stays pending)."""
        self.writer.processed(self.store.seed_user(), 1)
        self.store.make_fail("apply_finishes")
        self.successResultOf(self.writer.stop())
        self.assertEqual(self.writer.backlog, 1)
        self.flushLoggedErrors(StoreDown)


class Verifier(Resource):
    """A tiny verifier service: answers each POST with ``status`` (or never, when None)."""

    isLeaf = True

    def __init__(self, status: int | None = 204) -> None:
        super().__init__()
        self.status = status
        self.received: list[Any] = []
        self.unanswered: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        self.received.append(json.loads(request.content.read()))
        if self.status is None:
            self.unanswered.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        return b"{}"


def no_timers_left_on_the_global_reactor(test: SynchronousTestCase) -> None:
    """treq arms its per-call timeout on the global reactor (HttpVerification passes no
    reactor): check every call disarmed it, so no later test inherits a stray timer."""
    from twisted.internet import reactor

    clock: Any = reactor
    before = set(clock.getDelayedCalls())
    test.addCleanup(
        lambda: test.assertEqual([c for c in clock.getDelayedCalls() if c not in before], [])
    )


class HttpVerificationTests(SynchronousTestCase):
    def setUp(self) -> None:
        no_timers_left_on_the_global_reactor(self)
        self.clock = Clock()
        self.verifier = Verifier()
        self.http = StubTreq(self.verifier)
        self.breaker = CircuitBreaker(self.clock, threshold=3, cooldown=10)
        self.client = HttpVerification(
            self.http, "http://verifier.test/verify", self.breaker, self.clock
        )

    def verify(self, user_id: ObjectId | None = None) -> Deferred[None]:
        return ensureDeferred(self.client.verify(user_id or ObjectId()))

    def test_2xx_verifies_with_the_users_id(self) -> None:
        """A 2xx answer to POST {"id": ...} verifies the user."""
        for status in (200, 201, 204, 299):
            self.verifier.status = status
            user_id = ObjectId()
            self.assertIsNone(self.successResultOf(self.verify(user_id)))
            self.assertEqual(self.verifier.received[-1], {"id": str(user_id)})
        self.assertEqual(self.breaker.state, "closed")

    def test_error_status_raises_verification_failed(self) -> None:
        """A 500 (or any non-2xx) answer fails the attempt with VerificationFailed."""
        for status in (500, 404, 302, 429):
            self.verifier.status = status
            failure = self.failureResultOf(self.verify(), VerificationFailed)
            self.assertIn(str(status), failure.getErrorMessage())
            self.breaker.succeeded()  # keep the circuit closed between statuses

    def test_breaker_opens_after_failures_and_refuses_without_calling(self) -> None:
        """After `threshold` failures the circuit opens: attempts fail with CircuitOpen at once,
        and the verifier receives nothing until the cool-down ends."""
        self.verifier.status = 500
        for _ in range(3):
            self.failureResultOf(self.verify(), VerificationFailed)
        self.assertEqual(self.breaker.state, "open")
        self.failureResultOf(self.verify(), CircuitOpen)
        self.assertEqual(len(self.verifier.received), 3)
        self.clock.advance(10)
        self.verifier.status = 200
        self.successResultOf(self.verify())
        self.assertEqual(len(self.verifier.received), 4)
        self.assertEqual(self.breaker.state, "closed")

    def test_one_success_resets_the_failure_count(self) -> None:
        """Failures must be consecutive to open the circuit."""
        for status in (500, 500, 200, 500, 500):
            self.verifier.status = status
            self.verify().addErrback(lambda failure: failure.trap(VerificationFailed))
        self.assertEqual(self.breaker.state, "closed")

    def test_a_verifier_that_never_answers_times_out_as_a_failure(self) -> None:
        """A call with no answer fails after the per-call timeout, on squad's clock, as a
        verifier failure ("no answer within ..."): counted by the breaker, and so retried."""
        self.verifier.status = None
        attempt = self.verify()
        self.clock.advance(29.9)
        self.assertNoResult(attempt)
        self.clock.advance(0.1)
        failure = self.failureResultOf(attempt, VerificationFailed)
        self.assertIn("no answer within 30 s", failure.getErrorMessage())
        for _ in range(2):
            attempt = self.verify()
            self.clock.advance(30)
            self.failureResultOf(attempt, VerificationFailed)
        self.assertEqual(self.breaker.state, "open")

    def test_cancelling_an_attempt_in_flight_cancels_it(self) -> None:
        """Cancelling a verification whose call is in flight (a slow step being stopped or
        dropped) ends it with CancelledError: it is not a verifier failure, so it is neither
        retried as one nor counted against the circuit breaker."""
        self.verifier.status = None
        attempt = self.verify()
        self.assertNoResult(attempt)
        attempt.cancel()
        self.failureResultOf(attempt, CancelledError)
        for _ in range(5):
            attempt = self.verify()
            attempt.cancel()
            attempt.addErrback(lambda failure: None)
        self.assertEqual(self.breaker.state, "closed")


class HttpSlowWorkTests(SynchronousTestCase):
    def test_dropping_work_stops_an_http_slow_step_in_flight(self) -> None:
        """drop_all (DELETE /collections) stops a slow step whose HTTP call is in flight: the
        verifier is not called again for the dropped user, and nothing is recorded for it."""
        clock = Clock()
        store = FakeStore()
        verifier = Verifier(status=None)
        breaker = CircuitBreaker(clock, threshold=3, cooldown=10)
        http = HttpVerification(StubTreq(verifier), "http://verifier.test/verify", breaker, clock)
        writer = FinishWriter(clock, store, interval=INTERVAL)
        work = SlowWork(clock, store, http, writer, OWNER, backoff=Backoff(base=1.0, cap=4.0))
        work.startService()
        self.addCleanup(work.stopService)
        user_id = store.seed_user(owner=None)
        owner = work.owner_for_new_signup()
        work.batch_stored(store.seed_pending([user_id], owner), owner, [user_id])
        work.accept(user_id)
        self.assertEqual(len(verifier.received), 1)
        work.drop_all()
        verifier.status = 500
        clock.pump([1.0] * 30)
        self.assertEqual(len(verifier.received), 1, "the dropped user was verified again")
        self.assertEqual(work.running_steps, 0)
        self.assertEqual(work.failed_attempts, 0)
        self.assertEqual(store.called("apply_finishes"), 0)
        self.assertEqual(breaker.state, "closed")


class FlushDropTests(SlowWorkTestCase):
    def test_only_work_accepted_before_the_flush_is_dropped(self) -> None:
        """A flush seen from another process drops older work; work accepted after it goes on."""
        _, (old,) = self.accept_batch()
        self.clock.advance(10)
        _, (new,) = self.accept_batch()
        self.work.drop_accepted_before(START + 5)
        self.assertEqual(self.work.held, 1)
        self.verification.succeed(index=0)
        self.verification.succeed(index=1)
        self.flush()
        self.assertIs(self.store.user_docs[old]["processed"], False)
        self.assertIs(self.store.user_docs[new]["processed"], True)


class RecordingWorkTests(SlowWorkTestCase):
    """``recording_work``: what the group commit's write hands to the slow work and the
    hasher, whether the write succeeded or failed as a whole."""

    def setUp(self) -> None:
        super().setUp()
        self.hasher = quick_hasher(self.clock, self.store, self.writer)
        self.on_adopted = self.hasher.enqueue
        self.write = recording_work(
            partial(self.store.insert_signups, hasher=OWNER), self.work, self.hasher
        )

    def signups(self, count: int) -> list[PendingSignup]:
        return [
            PendingSignup(
                user={"_id": ObjectId(), "processed": False},
                sealed_password=b"sealed",
                owner=self.work.owner_for_new_signup(),
            )
            for _ in range(count)
        ]

    def test_a_written_batch_is_held_and_queued_for_hashing(self) -> None:
        """After a write, the stored users' slow steps are held (started on accept) and the
        batch's sealed passwords are queued for this process's hasher."""
        batch = self.signups(3)
        self.successResultOf(ensureDeferred(self.write(batch)))
        self.assertEqual(self.work.held, 3)
        self.assertEqual(self.hasher.backlog, 3)
        for item in batch:
            self.work.accept(item.user_id)
        self.assertEqual(len(self.verification.calls), 3)

    def test_a_user_refused_by_the_database_is_not_held(self) -> None:
        """A user whose own insert was refused frees its slot; the others are held."""
        batch = self.signups(2)
        self.store.refuse = lambda user: user["_id"] == batch[0].user_id
        self.successResultOf(ensureDeferred(self.write(batch)))
        self.work.signup_failed(batch[0].owner)  # as the API does for the refused one
        self.assertEqual(self.work.held, 1)

    def test_a_write_that_failed_as_a_whole_is_looked_for_later(self) -> None:
        """When the write fails as a whole, its batch is looked for at the next refill (it may
        have landed): found, its slow steps are held and its passwords queued for hashing."""
        batch = self.signups(2)
        self.store.make_fail("insert_signups", times=1)
        self.failureResultOf(ensureDeferred(self.write(batch)), StoreDown)
        for item in batch:
            self.work.signup_failed(item.owner)
        self.assertEqual(self.work.held, 0)
        self.assertEqual(self.hasher.backlog, 0)  # nothing was named: the write never began
        batch = self.signups(2)
        self.successResultOf(ensureDeferred(self.store.insert_signups(batch, OWNER)))
        self.store.make_fail("insert_signups", times=1)
        self.failureResultOf(ensureDeferred(self.write(batch)), StoreDown)
        for item in batch:
            self.work.signup_failed(item.owner)
        self.assertEqual((self.work.held, self.hasher.backlog), (0, 0))
        self.successResultOf(ensureDeferred(self.work.refill([])))
        self.assertEqual((self.work.held, self.hasher.backlog), (2, 2))
