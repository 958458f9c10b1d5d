"""The database's own cost per operation by collection size (docs/database.md's table).

    .venv/bin/python -m benchmark.db_ops [mongodb://127.0.0.1:27017] [sizes...]

Fills a scratch collection, then times finds, updates and deletes by ``_id`` (one client,
sequential, newest documents first), and drops the scratch database. Synchronous pymongo: this is
a measuring tool, not the service.
"""

from __future__ import annotations

import sys
import time

import pymongo
from bson import ObjectId

OPERATIONS = 50


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


if __name__ == "__main__":
    arguments = sys.argv[1:]
    target = (
        arguments.pop(0)
        if arguments and arguments[0].startswith("mongodb://")
        else ("mongodb://127.0.0.1:27017")
    )
    measure(target, [int(a) for a in arguments] or [1000, 50000])
