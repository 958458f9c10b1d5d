"""Sign-up writes cut by a replica-set failover are retried once, and never acknowledged falsely."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo.errors import AutoReconnect, NotPrimaryError
from pymongo.write_concern import WriteConcern
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from squad.storage.failover import retry_once_on_failover
from squad.storage.store import PendingSignup, WriteRefused

DUPLICATE = "E11000 duplicate key error collection: squad.pending index: _id_"


def item() -> PendingSignup:
    return PendingSignup(
        user={"_id": ObjectId(), "username": "ada"}, sealed_password=b"s", owner="o"
    )


class FakeWrite:
    """``Store.insert_signups`` scripted per attempt: raise, or mark items refused."""

    def __init__(self, *attempts: Any) -> None:
        self.attempts = list(attempts)
        self.calls: list[list[PendingSignup]] = []

    async def __call__(self, batch: list[PendingSignup]) -> None:
        self.calls.append(list(batch))
        attempt = self.attempts.pop(0)
        if isinstance(attempt, BaseException):
            raise attempt
        for index, message in attempt.items():
            batch[index].error = WriteRefused(message)


class FakeUsers:
    """The ``users`` collection, and its database answering ``insert`` commands: records the
    inserted documents, may answer with write errors."""

    name = "users"
    write_concern = WriteConcern()

    def __init__(self, write_errors: list[dict[str, Any]] | None = None) -> None:
        self.database = self
        self.write_errors = write_errors
        self.inserted: list[list[dict[str, Any]]] = []

    async def command(self, command: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.inserted.append(command["documents"])
        return {"ok": 1, "writeErrors": self.write_errors or []}


def run(write: FakeWrite, users: FakeUsers, batch: list[PendingSignup]) -> list[int]:
    """Runs the wrapped write; returns how many retries it counted."""
    retries: list[int] = []
    wrapped = retry_once_on_failover(write, lambda: users, 1.5, lambda: retries.append(1))
    test = SynchronousTestCase()
    test.successResultOf(ensureDeferred(wrapped(batch)))
    return retries


class RetryOnceTests(SynchronousTestCase):
    def test_a_write_that_succeeds_is_not_repeated(self) -> None:
        """Without a failure the batch is written once and nothing is retried."""
        write, batch = FakeWrite({}), [item(), item()]
        self.assertEqual(run(write, FakeUsers(), batch), [])
        self.assertEqual(len(write.calls), 1)

    def test_a_failover_is_retried_once(self) -> None:
        """A batch cut by NotPrimaryError (or AutoReconnect) is written again, the same
        documents, and then acknowledged."""
        for cut in (NotPrimaryError("not primary"), AutoReconnect("connection lost")):
            write, batch = FakeWrite(cut, {}), [item(), item()]
            self.assertEqual(run(write, FakeUsers(), batch), [1])
            self.assertEqual(write.calls, [batch, batch])
            self.assertEqual([i.error for i in batch], [None, None])

    def test_work_that_landed_before_the_cut_gets_its_user_written(self) -> None:
        """On the retry a duplicate pending document means the first attempt wrote the work
        but maybe not the user: the user is written then, and the item acknowledged."""
        write, users, batch = FakeWrite(AutoReconnect(), {0: DUPLICATE}), FakeUsers(), [item()]
        run(write, users, batch)
        self.assertEqual(users.inserted, [[batch[0].user]])
        self.assertIsNone(batch[0].error)

    def test_a_user_that_landed_counts_as_written(self) -> None:
        """A duplicate key on the user itself means the first attempt wrote it: acknowledged."""
        users = FakeUsers([{"index": 0, "code": 11000, "errmsg": DUPLICATE}])
        batch = [item()]
        run(FakeWrite(AutoReconnect(), {0: DUPLICATE}), users, batch)
        self.assertIsNone(batch[0].error)

    def test_a_user_refused_for_another_reason_is_not_acknowledged(self) -> None:
        """Any other refusal of the user's insert leaves the item failed (a 503, not a 201)."""
        users = FakeUsers([{"index": 0, "code": 2, "errmsg": "bad value"}])
        batch = [item()]
        run(FakeWrite(AutoReconnect(), {0: DUPLICATE}), users, batch)
        self.assertIsInstance(batch[0].error, WriteRefused)

    def test_items_refused_before_the_cut_are_not_written_again(self) -> None:
        """An item the first attempt already refused keeps its refusal and is not retried."""
        first, second = item(), item()

        class CutAfterMarking(FakeWrite):
            async def __call__(self, batch: list[PendingSignup]) -> None:
                if not self.calls:
                    self.calls.append(list(batch))
                    batch[0].error = WriteRefused("document too large")
                    raise AutoReconnect("connection lost")
                await super().__call__(batch)

        write = CutAfterMarking({})
        run(write, FakeUsers(), [first, second])
        self.assertEqual(write.calls[1], [second])
        self.assertIsInstance(first.error, WriteRefused)
        self.assertIsNone(second.error)

    def test_a_second_failure_fails_the_batch(self) -> None:
        """Only one retry: if it fails too, the batch fails (the clients get a fast 503)."""
        write = FakeWrite(AutoReconnect(), AutoReconnect())
        wrapped = retry_once_on_failover(write, FakeUsers, 1.5)
        self.failureResultOf(ensureDeferred(wrapped([item()])), AutoReconnect)
