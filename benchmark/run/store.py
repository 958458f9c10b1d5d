"""
The database side of a run: how many users it left, whether they all got processed, and the
server's version. Synchronous pymongo with short timeouts: this is a command-line tool, not the
service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from benchmark.figures import StoreCheck

__all__ = [
    "DRAIN_LIMIT",
    "DrainOutcome",
    "MongoStore",
    "StoreUnavailable",
    "UserCounter",
    "nothing_lost",
    "wait_for_drain",
]

DRAIN_LIMIT = 600.0
COLLECTION = "users"


class StoreUnavailable(Exception):
    """The database could not be read; the message says why."""


class UserCounter(Protocol):
    """What the checks need from the database."""

    def count_users(self) -> int:
        """How many users the collection holds."""

    def count_unprocessed(self) -> int:
        """How many of them still have C{processed: false}."""


class MongoStore:
    """The C{users} collection of one database, read with pymongo."""

    def __init__(self, uri: str, database: str, socket_timeout: float = 120.0) -> None:
        try:
            import pymongo
        except ImportError:
            raise StoreUnavailable("pymongo is not installed: run ./bin/setup") from None
        self.uri = uri
        self.database = database
        self._client: Any = pymongo.MongoClient(
            uri,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=3000,
            # Counting a few hundred thousand documents in FerretDB takes seconds, not minutes.
            socketTimeoutMS=int(socket_timeout * 1000),
            appname="squad-benchmark",
        )
        self._users: Any = self._client[database][COLLECTION]

    def _call(self, what: Callable[[], Any]) -> Any:
        try:
            return what()
        except Exception as error:
            first_line = str(error).split("\n", 1)[0].split(", Timeout:", 1)[0]
            raise StoreUnavailable(
                f"the database at {self.uri} did not answer: {first_line}"
            ) from None

    def count_users(self) -> int:
        """How many users the collection holds."""
        return int(self._call(lambda: self._users.count_documents({})))

    def count_unprocessed(self) -> int:
        """How many users still have C{processed: false}."""
        return int(self._call(lambda: self._users.count_documents({"processed": False})))

    def count_unhashed(self) -> int:
        """How many users have no password hash yet (one scan of C{users})."""
        return int(
            self._call(lambda: self._users.count_documents({"password_hash": {"$exists": False}}))
        )

    def user_dates(self) -> list[dict[str, Any]]:
        """Every user's C{date_created}, C{date_updated} and C{processed}, in one pass."""
        fields = {"_id": 0, "date_created": 1, "date_updated": 1, "processed": 1}
        return list(self._call(lambda: list(self._users.find({}, fields, batch_size=5000))))

    def server_version(self) -> str:
        """``FerretDB v1.24.2 (MongoDB 7.0.42 compatible)`` or ``MongoDB 7.0.5``."""
        info = self._call(lambda: self._client.admin.command("buildInfo"))
        version = str(info.get("version", "?"))
        ferretdb = info.get("ferretdbVersion") or (info.get("ferretdb") or {}).get("version")
        if ferretdb:
            return f"FerretDB {ferretdb} (MongoDB {version} compatible)"
        return f"MongoDB {version}"

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def database_version(uri: str, database: str) -> str:
    """The database server's version for a report, or ``unknown (why)`` when it cannot say."""
    try:
        store = MongoStore(uri, database)
    except StoreUnavailable as error:
        return f"unknown ({error})"
    try:
        return store.server_version()
    except StoreUnavailable as error:
        return f"unknown ({error})"
    finally:
        store.close()


def nothing_lost(before: int, after: int, ok: int) -> StoreCheck:
    """
    The verdict of the nothing-lost check: the users the run added (C{after} - C{before}) must
    be at least the number of 2xx answers C{ok}. More is fine (a request can be stored and
    still time out at the client); fewer means acknowledged sign-ups were lost.
    """
    stored = after - before
    if stored >= ok:
        return StoreCheck("PASS", f"{stored} users stored for {ok} 2xx answers", stored)
    return StoreCheck(
        "FAIL", f"{stored} users stored for {ok} 2xx answers: {ok - stored} lost", stored
    )


@dataclass(frozen=True)
class DrainOutcome:
    """How the wait for every stored user to be processed ended."""

    seconds: float
    drained: bool
    remaining: int


def wait_for_drain(
    store: UserCounter,
    limit: float = DRAIN_LIMIT,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[float, int], None] | None = None,
) -> DrainOutcome:
    """
    Poll until no user has C{processed: false}, at most C{limit} seconds. C{report} hears
    (elapsed seconds, users left) after every poll, for a live display.
    """
    start = clock()
    while True:
        remaining = store.count_unprocessed()
        elapsed = clock() - start
        if report is not None:
            report(elapsed, remaining)
        if remaining == 0:
            return DrainOutcome(elapsed, True, 0)
        if elapsed >= limit:
            return DrainOutcome(elapsed, False, remaining)
        sleep(interval)
