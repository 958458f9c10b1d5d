"""The database's own ceiling for squad's writes, with no HTTP and no squad in the way.

    .venv/bin/python -m benchmark.probes.db_ceiling [mongodb://127.0.0.1:27017] [--seconds 5]

Plays squad's database work per sign-up from a few client threads, as fast as the server takes
it, and prints sign-ups per second and the server's CPU per sign-up (read from /proc when the
server listens on this machine):

- ``accept``: what the request path writes, per group-commit batch of 25 or 100 users, four
  batches in flight: one ``insert_many`` into ``pending`` and then one into ``users``.
- ``finish``: what the background writes later per user: the slow step's update, the password
  hash's update and the deletion of the pending document, by ``_id``, in bulk messages of 16;
  then the same as squad writes it now: one ``update_many`` by ``_id: {$in}`` setting
  ``processed`` and ``date_updated`` for 16 users, a bulk message of 16 ``update_one`` setting
  a new ``password_hash``, and one ``delete_many`` by ``_id: {$in}``.

With ``--stalls``, it measures stalls instead of rates: for ``--seconds`` (30), 8 threads
insert batches of 1-200 users as squad's group commit does (``pending``, then ``users``), at
``--rate`` users/s in all (2,500; 0: as fast as they can), while 2 threads finish them
(``UpdateOne`` by ``_id`` in messages of ``--message`` (16), then the ``DeleteOne`` of their
pending documents) and one thread reads all of ``pending`` every ``--look-every`` s (10; 0:
never), as squad's look for unowned work does. It prints the slowest insert batch, how many
took over 1 s, and, given the server's data folder (``--data``), the largest size of SQLite's
write-ahead log.

A scratch database (``squad_db_ceiling``) is dropped at the end. Synchronous pymongo in threads:
a measuring tool, not the service.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import pymongo
from bson import ObjectId
from pymongo import DeleteOne, UpdateOne

from harness.processes import cpu_seconds, listening_pids

DATABASE = "squad_db_ceiling"
MESSAGE = 16  # squad.storage.store.BULK_OPERATIONS_PER_MESSAGE
INSERTERS = 8  # squad's sign-up connections per process


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
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (5; 30)")
    parser.add_argument("--stalls", action="store_true", help="measure stalls, not rates")
    parser.add_argument("--data", help="the server's data folder, to watch its WAL")
    parser.add_argument("--message", type=int, default=MESSAGE, help="updates per message")
    parser.add_argument("--rate", type=float, default=2500.0, help="users/s inserted (2500)")
    parser.add_argument("--look-every", type=float, default=10.0, help="s between reads (10)")
    args = parser.parse_args(argv)
    if args.stalls:
        stalls(args.uri, args.seconds or 30.0, args.data, args.message, args.rate, args.look_every)
        return
    args.seconds = args.seconds or 5.0

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

        def finish_lists() -> int:
            with lock:
                ids = [accepted.pop() for _ in range(min(MESSAGE, len(accepted)))]
            if not ids:
                return 0
            now = datetime.now(UTC)
            database.users.update_many(
                {"_id": {"$in": ids}}, {"$set": {"processed": True, "date_updated": now}}
            )
            database.users.bulk_write(
                [
                    UpdateOne({"_id": i}, {"$set": {"password_hash": "$argon2id$" + "x" * 80}})
                    for i in ids
                ],
                ordered=False,
            )
            database.pending.delete_many({"_id": {"$in": ids}})
            return len(ids)

        _measure("finish by lists of 16, 2 in flight", 2, args.seconds, finish_lists, server)
    finally:
        client.drop_database(DATABASE)
        client.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def stalls(
    uri: str,
    seconds: float,
    data: str | None,
    message: int,
    rate: float = 2500.0,
    look_every: float = 10.0,
) -> None:
    """Squad's write pattern for ``seconds``; print the slowest writes and the WAL's size."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=3000, maxPoolSize=16, socketTimeoutMS=60000
    )
    database = client[DATABASE]
    wal = os.path.join(data, DATABASE + ".sqlite-wal") if data else None
    server = listening_pids(urlparse(uri).port or 27017)
    accepted: list[ObjectId] = []
    lock = threading.Lock()
    inserts: list[float] = []
    updates: list[float] = []
    reads: list[float] = []
    wal_sizes: list[int] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def timed(into: list[float], work: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            work()
        except pymongo.errors.PyMongoError as error:
            errors.append(f"{type(error).__name__}: {str(error)[:80]}")
        with lock:
            into.append(time.monotonic() - started)

    def insert_both(ids: list[ObjectId]) -> None:
        now = datetime.now(UTC)
        database.pending.insert_many(
            [{"_id": i, "owner": "stalls", "sealed": b"s" * 96} for i in ids], ordered=False
        )
        database.users.insert_many([_user(i, now) for i in ids], ordered=False)

    def insert(seed: int) -> None:
        chosen = random.Random(seed)
        while time.monotonic() < stop:
            started = time.monotonic()
            ids = [ObjectId() for _ in range(chosen.randint(1, 200))]
            timed(inserts, functools.partial(insert_both, ids))
            with lock:
                accepted.extend(ids)
            if rate:
                time.sleep(max(0.0, len(ids) / (rate / INSERTERS) - (time.monotonic() - started)))

    def update(ids: list[ObjectId]) -> None:
        fields = {
            "processed": True,
            "date_updated": datetime.now(UTC),
            "password_hash": "$argon2id$" + "x" * 80,
        }
        database.users.bulk_write(
            [UpdateOne({"_id": i}, {"$set": fields}) for i in ids], ordered=False
        )

    def delete(ids: list[ObjectId]) -> None:
        database.pending.bulk_write([DeleteOne({"_id": i}) for i in ids], ordered=False)

    def finish() -> None:
        while time.monotonic() < stop:
            with lock:
                ids = [accepted.pop(0) for _ in range(min(message * 4, len(accepted)))]
            if not ids:
                time.sleep(0.01)
                continue
            for start in range(0, len(ids), message):
                timed(updates, functools.partial(update, ids[start : start + message]))
                timed(updates, functools.partial(delete, ids[start : start + message]))

    def look() -> None:
        while look_every and time.monotonic() < stop:
            time.sleep(look_every)
            timed(reads, lambda: sum(1 for _ in database.pending.find({"owner": "nobody"})))

    def watch() -> None:
        while time.monotonic() < stop + 1:
            if wal:
                with contextlib.suppress(OSError):
                    wal_sizes.append(os.stat(wal).st_size)
            time.sleep(0.05)

    try:
        database.drop_collection("users")
        database.drop_collection("pending")
        database.users.insert_one({"_id": "warm-up"})
        database.pending.insert_one({"_id": "warm-up"})
        before = cpu_seconds(server) if server else None
        threads = [threading.Thread(target=insert, args=(n,)) for n in range(INSERTERS)]
        threads += [threading.Thread(target=finish) for _ in range(2)]
        threads += [threading.Thread(target=look), threading.Thread(target=watch)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = cpu_seconds(server) if server else None
        users = database.users.estimated_document_count()
        print(f"{seconds:g} s, messages of {message}: {users - 1:,} users inserted", end="")
        print(f", {len(updates) // 2 * message:,} or fewer finished", end="")
        if before is not None and after is not None:
            print(f", server CPU {after - before:.1f} s", end="")
        print()
        for what, times in (("insert batch", inserts), ("update/delete message", updates)):
            print(
                f"{what}: {len(times):,}, p50 {_percentile(times, 0.5) * 1000:,.0f} ms,"
                f" p99 {_percentile(times, 0.99) * 1000:,.0f} ms,"
                f" max {max(times, default=0):.2f} s,"
                f" over 1 s: {sum(t > 1 for t in times)}"
            )
        print(f"read of all pending: {len(reads)}, max {max(reads, default=0):.2f} s")
        if wal_sizes:
            print(
                f"WAL: max {max(wal_sizes) / 2**20:,.1f} MiB,"
                f" at the end {wal_sizes[-1] / 2**20:,.1f} MiB"
            )
        if errors:
            print(f"errors: {len(errors)}, first: {errors[0]}")
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
