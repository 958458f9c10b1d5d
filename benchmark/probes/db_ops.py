"""The database's own cost per operation by collection size (docs/database.md's table).

    .venv/bin/python -m benchmark.probes.db_ops [mongodb://127.0.0.1:27017] [sizes...]
    .venv/bin/python -m benchmark.probes.db_ops [uri] --ids 100,200 [--skip WORD] [--rounds 3] \
        [sizes...]

Fills a scratch collection, then times finds, updates and deletes by ``_id`` (one client,
sequential, newest documents first), and drops the scratch database. With ``--ids N,...`` it
times operations on a list of N ids instead: ``find``, ``update_many`` and ``delete_many`` with
``{_id: {$in: ids}}``, and one ``bulk_write`` of N ``UpdateOne`` by ``_id``, then squad's own
shapes (an ``update_many`` setting ``processed`` and ``date_updated``, a ``bulk_write`` of N
``UpdateOne`` setting a new string field), with the database
server's CPU per document (from /proc, when it listens on this machine); ``--skip WORD`` leaves
out the operations whose name holds WORD (one bulk message of 100 or more updates deadlocks an
unpatched FerretDB). Synchronous pymongo:
this is a measuring tool, not the service.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlparse

import pymongo
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection

from harness.processes import cpu_seconds, listening_pids

OPERATIONS = 50
ROUNDS = 3  # of each list operation, on fresh ids each time (--rounds)


def measure(uri: str, sizes: list[int]) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=3000
    )
    database = client["squad_db_ops"]
    try:
        print("documents | find ms | update ms | delete ms")
        for size in sizes:
            collection = database[f"c{size}"]
            collection.drop()
            ids = [ObjectId() for _ in range(size)]
            for start in range(0, size, 1000):
                collection.insert_many(
                    [{"_id": i, "processed": False} for i in ids[start : start + 1000]]
                )
            ids.reverse()
            timings = []
            for name in ("find", "update", "delete"):
                batch, ids = ids[:OPERATIONS], ids[OPERATIONS:]
                started = time.perf_counter()
                for user_id in batch:
                    if name == "find":
                        collection.find_one({"_id": user_id})
                    elif name == "update":
                        collection.update_one({"_id": user_id}, {"$set": {"processed": True}})
                    else:
                        collection.delete_one({"_id": user_id})
                timings.append((time.perf_counter() - started) / len(batch) * 1000)
            print(f"{size} | " + " | ".join(f"{t:.2f}" for t in timings))
    finally:
        client.drop_database("squad_db_ops")
        client.close()


Scratch = Collection[dict[str, object]]


def _fill(collection: Scratch, size: int) -> list[ObjectId]:
    ids = [ObjectId() for _ in range(size)]
    for start in range(0, size, 1000):
        collection.insert_many(
            [
                {"_id": i, "processed": False, "date_updated": datetime(2026, 1, 1, tzinfo=UTC)}
                for i in ids[start : start + 1000]
            ]
        )
    return ids


def _list_operations(
    collection: Scratch, n: int
) -> list[tuple[str, Callable[[list[ObjectId]], object]]]:
    return [
        ("find $in", lambda b: list(collection.find({"_id": {"$in": b}}))),
        (
            "update_many $in",
            lambda b: collection.update_many({"_id": {"$in": b}}, {"$set": {"processed": True}}),
        ),
        (
            f"bulk_write of {n} UpdateOne",
            lambda b: collection.bulk_write(
                [UpdateOne({"_id": i}, {"$set": {"processed": True}}) for i in b], ordered=False
            ),
        ),
        (
            "update_many $in, $set processed+date",
            lambda b: collection.update_many(
                {"_id": {"$in": b}},
                {"$set": {"processed": True, "date_updated": datetime.now(UTC)}},
            ),
        ),
        (
            f"bulk_write of {n} UpdateOne, $set new field",
            lambda b: collection.bulk_write(
                [
                    UpdateOne({"_id": i}, {"$set": {"password_hash": "$argon2id$" + "x" * 80}})
                    for i in b
                ],
                ordered=False,
            ),
        ),
        ("delete_many $in", lambda b: collection.delete_many({"_id": {"$in": b}})),
    ]


def measure_lists(
    uri: str, sizes: list[int], lists: list[int], skip: str | None = None, rounds: int = ROUNDS
) -> None:
    """Time ``rounds`` of each operation on lists of ids, in collections of ``sizes`` documents."""
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=3000
    )
    server = listening_pids(urlparse(uri).port or 27017)
    database = client["squad_db_ops"]
    try:
        print("documents | ids | operation | ms per call | server CPU us per listed id")
        for size in sizes:
            collection = database[f"c{size}"]
            collection.drop()
            ids = _fill(collection, size)
            ids.reverse()
            for n in lists:
                for name, operation in _list_operations(collection, n):
                    if skip and skip in name:
                        continue
                    # Half of each list is ids that are not there: both cases are in the figure.
                    absent = [ObjectId() for _ in range(n // 2)]
                    took = 0.0
                    before = cpu_seconds(server) if server else None
                    for _ in range(rounds):
                        batch, ids = ids[: n - len(absent)], ids[n - len(absent) :]
                        started = time.perf_counter()
                        operation(batch + absent)
                        took += time.perf_counter() - started
                    after = cpu_seconds(server) if server else None
                    cpu = (
                        f"{(after - before) / (rounds * n) * 1e6:,.0f}"
                        if before is not None and after is not None
                        else "-"
                    )
                    print(f"{size} | {n} | {name} | {took / rounds * 1000:.1f} | {cpu}", flush=True)
    finally:
        client.drop_database("squad_db_ops")
        client.close()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    id_lists: list[int] = []
    if "--ids" in arguments:
        at = arguments.index("--ids")
        id_lists = [int(n) for n in arguments[at + 1].split(",")]
        del arguments[at : at + 2]
    skip = None
    rounds = ROUNDS
    if "--rounds" in arguments:
        at = arguments.index("--rounds")
        rounds = int(arguments[at + 1])
        del arguments[at : at + 2]
    if "--skip" in arguments:
        at = arguments.index("--skip")
        skip = arguments[at + 1]
        del arguments[at : at + 2]
    target = (
        arguments.pop(0)
        if arguments and arguments[0].startswith("mongodb://")
        else ("mongodb://127.0.0.1:27017")
    )
    if id_lists:
        measure_lists(target, [int(a) for a in arguments] or [100000], id_lists, skip, rounds)
    else:
        measure(target, [int(a) for a in arguments] or [1000, 50000])
