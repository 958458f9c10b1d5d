"""How long squad's look for unowned work takes on a database, while sign-ups keep arriving.

    .venv/bin/python -m benchmark.db_unowned_look [mongodb://127.0.0.1:27017] [--documents N]

Fills a scratch ``pending`` collection with ``--documents`` items owned by some process (as
during a run, when every user waiting for its password hash has one), then, while four threads
keep inserting sign-ups the way the group commit does, times squad's look for unowned work
(``squad.storage.store.Store.adopt`` with the pool owner: ``{"owner": {"$in": [""]}}``, at most
100).
Nothing is unowned, so on FerretDB, which sends only ``_id`` filters to SQL, each look reads the
whole collection. The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pymongo
from bson import ObjectId

from benchmark.db_ceiling import _user

DATABASE = "squad_db_unowned_look"
BATCH = 25


def _pending(user_id: ObjectId) -> dict[str, Any]:
    return {"_id": user_id, "owner": "host:1234:abcdef12", "sealed": b"s" * 60}


def _insert_batch(database: Any) -> None:
    now = datetime.now(UTC)
    ids = [ObjectId() for _ in range(BATCH)]
    database.pending.insert_many([_pending(user_id) for user_id in ids], ordered=False)
    database.users.insert_many([_user(user_id, now) for user_id in ids], ordered=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", nargs="?", default="mongodb://127.0.0.1:27017")
    parser.add_argument("--documents", type=int, default=60_000, help="pending items (60,000)")
    parser.add_argument("--looks", type=int, default=3, help="looks to time (3)")
    args = parser.parse_args(argv)

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        args.uri, serverSelectionTimeoutMS=3000, maxPoolSize=8
    )
    database = client[DATABASE]
    try:
        for _ in range(0, args.documents, 1000):
            database.pending.insert_many([_pending(ObjectId()) for _ in range(1000)])
        stop = threading.Event()

        def keep_writing() -> None:
            while not stop.is_set():
                _insert_batch(database)

        writers = [threading.Thread(target=keep_writing) for _ in range(4)]
        for writer in writers:
            writer.start()
        try:
            for _ in range(args.looks):
                size = database.pending.estimated_document_count()
                started = time.monotonic()
                found = list(database.pending.find({"owner": {"$in": [""]}}, limit=-100))
                took = time.monotonic() - started
                print(f"look over {size:,} pending items: {took:.2f} s, {len(found)} found")
        finally:
            stop.set()
            for writer in writers:
                writer.join()
    finally:
        client.drop_database(DATABASE)
        client.close()


if __name__ == "__main__":
    main()
