"""The database's own ceiling for squad's writes, with no HTTP and no squad in the way.

    .venv/bin/python -m benchmark.db_ceiling [mongodb://127.0.0.1:27017] [--seconds 5]

Plays squad's database work per sign-up from a few client threads, as fast as the server takes
it, and prints sign-ups per second and the server's CPU per sign-up (read from /proc when the
server listens on this machine):

- ``accept``: what the request path writes, per group-commit batch of 25 or 100 users, four
  batches in flight: one ``insert_many`` into ``pending`` and then one into ``users``.
- ``finish``: what the background writes later per user: the slow step's update, the password
  hash's update and the deletion of the pending document, by ``_id``, in bulk messages of 16.

A scratch database (``squad_db_ceiling``) is dropped at the end. Synchronous pymongo in threads:
a measuring tool, not the service.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import pymongo
from bson import ObjectId
from pymongo import DeleteOne, UpdateOne

from benchmark.procs import cpu_seconds, listening_pids

DATABASE = "squad_db_ceiling"
MESSAGE = 16  # squad.store.BULK_OPERATIONS_PER_MESSAGE


def _user(user_id: ObjectId, now: datetime) -> dict[str, Any]:
    return {
        "_id": user_id,
        "firstName": "Grace",
        "lastName": "Hopper",
        "email": f"grace.{user_id}@example.org",
        "username": f"ghopper{str(user_id)[-8:]}",
        "processed": False,
        "date_created": now,
        "date_updated": now,
    }


def _run(threads: int, seconds: float, work: Callable[[], int]) -> int:
    """Run ``work`` (returns sign-ups done) in ``threads`` threads for ``seconds``."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < stop:
            done[index] += work()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", nargs="?", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    args = parser.parse_args(argv)

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        args.uri, serverSelectionTimeoutMS=3000, maxPoolSize=16
    )
    database = client[DATABASE]
    port = urlparse(args.uri).port or 27017
    server = listening_pids(port)
    accepted: list[ObjectId] = []
    lock = threading.Lock()
    try:
        database.drop_collection("users")
        database.drop_collection("pending")
        print(f"{'what':<34} {'sign-ups/s':>10} {'server CPU us/sign-up':>22}")
        for batch in (25, 100):

            def accept(batch: int = batch) -> int:
                now = datetime.now(UTC)
                ids = [ObjectId() for _ in range(batch)]
                database.pending.insert_many(
                    [{"_id": i, "owner": "ceiling", "sealed": b"s" * 96} for i in ids],
                    ordered=False,
                )
                database.users.insert_many([_user(i, now) for i in ids], ordered=False)
                with lock:
                    accepted.extend(ids)
                return batch

            _measure(f"accept, batches of {batch}, 4 in flight", 4, args.seconds, accept, server)

        def finish() -> int:
            with lock:
                ids = [accepted.pop() for _ in range(min(MESSAGE, len(accepted)))]
            if not ids:
                return 0
            now = datetime.now(UTC)
            for requests, collection in (
                (
                    [
                        UpdateOne({"_id": i}, {"$set": {"processed": True, "date_updated": now}})
                        for i in ids
                    ],
                    database.users,
                ),
                (
                    [
                        UpdateOne({"_id": i}, {"$set": {"password_hash": "$argon2id$" + "x" * 80}})
                        for i in ids
                    ],
                    database.users,
                ),
                ([DeleteOne({"_id": i}) for i in ids], database.pending),
            ):
                collection.bulk_write(requests, ordered=False)
            return len(ids)

        _measure("finish, messages of 16, 2 in flight", 2, args.seconds, finish, server)
    finally:
        client.drop_database(DATABASE)
        client.close()


def _measure(
    what: str, threads: int, seconds: float, work: Callable[[], int], server: set[int]
) -> None:
    before = cpu_seconds(server) if server else None
    started = time.monotonic()
    count = _run(threads, seconds, work)
    took = time.monotonic() - started
    after = cpu_seconds(server) if server else None
    cpu = (
        f"{(after - before) / count * 1e6:,.0f}"
        if before is not None and after is not None and count
        else "-"
    )
    print(f"{what:<34} {count / took:>10,.0f} {cpu:>22}", flush=True)


if __name__ == "__main__":
    main()
