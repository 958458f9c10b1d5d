"""The database's insert capacity under concurrency (docs/scaling.md's table).

    .venv/bin/python -m benchmark.probes.db_inserts mongodb://127.0.0.1:27017 THREADS BATCH SECONDS

THREADS clients each send ``insert_many`` of BATCH small user-like documents, back to back, for
SECONDS; prints commands and documents per second with the latency p50 and p99, then drops its
scratch database. Synchronous pymongo in threads: a measuring tool, not the service.
"""

from __future__ import annotations

import sys
import threading
import time

import pymongo
from bson import ObjectId


def measure(uri: str, threads: int, batch: int, seconds: float) -> str:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, maxPoolSize=threads + 2, serverSelectionTimeoutMS=3000
    )
    collection = client["squad_db_inserts"]["t"]
    collection.drop()
    collection.insert_one({"warm": 1})
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < stop:
            documents = [
                {
                    "_id": ObjectId(),
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "email": "ada@example.org",
                    "username": "ada",
                    "processed": False,
                }
                for _ in range(batch)
            ]
            started = time.monotonic()
            collection.insert_many(documents, ordered=False)
            took = time.monotonic() - started
            with lock:
                latencies.append(took)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    client.drop_database("squad_db_inserts")
    client.close()
    latencies.sort()
    return (
        f"threads {threads} batch {batch}: {len(latencies) / elapsed:.0f} insert_many/s, "
        f"{len(latencies) * batch / elapsed:.0f} documents/s, "
        f"p50 {1000 * latencies[len(latencies) // 2]:.1f} ms, "
        f"p99 {1000 * latencies[int(len(latencies) * 0.99)]:.1f} ms"
    )


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    uri, threads, batch, seconds = sys.argv[1:]
    print(measure(uri, int(threads), int(batch), float(seconds)))


if __name__ == "__main__":
    main()
