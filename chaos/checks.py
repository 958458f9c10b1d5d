"""The checks of ``bin/chaos`` once the load is over: what the database holds of the
acknowledged users, and the verdict printed from it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pymongo
from bson import ObjectId

from chaos.load import ANSWER_LIMIT, REQUEST_TIMEOUT, Tally
from chaos.schedule import Faults
from chaos.services import DATABASE

PROCESSED_LIMIT = 90.0
READY_LIMIT = 15.0


def unprocessed(mongo: pymongo.MongoClient[dict[str, Any]]) -> set[ObjectId]:
    """The ids of every stored user not processed yet (one read; the database is ours)."""
    return {doc["_id"] for doc in mongo[DATABASE].users.find({"processed": False}, {"_id": 1})}


def final_counts(mongo: pymongo.MongoClient[dict[str, Any]], ids: list[ObjectId]) -> Counter[str]:
    """How many of ``ids`` are stored and processed; what else is there."""
    seen = {
        doc["_id"]: bool(doc.get("processed"))
        for doc in mongo[DATABASE].users.find({}, {"processed": 1})
    }
    counts: Counter[str] = Counter()
    counts["stored"] = sum(1 for user_id in ids if user_id in seen)
    counts["processed"] = sum(1 for user_id in ids if seen.get(user_id))
    counts["unacknowledged stored"] = len(seen) - len(set(ids) & seen.keys())
    # Batches whose work (slow steps or hashes) is still recorded as to do.
    counts["work documents"] = sum(
        mongo[DATABASE][name].count_documents({}) for name in ("pending", "sealed_passwords")
    )
    return counts


def verdict(tally: Tally, faults: Faults, counts: Counter[str], waited: float) -> list[str]:
    """Print what the run saw; return the checks that failed (none: it passed)."""
    ids = tally.acknowledged
    lost = len(ids) - counts["stored"]
    not_processed = len(ids) - counts["processed"]
    ready_after = faults.ready_after if faults.ready_after is not None else float("inf")
    print(f"acknowledged        {len(ids)}")
    print(f"lost                {lost}")
    print(f"processed           {counts['processed']}")
    print(
        f"not processed       {not_processed}"
        + (f" (all processed {waited:.1f} s after the load)" if not not_processed else "")
    )
    print(f"longest answer      {tally.longest_answer:.2f} s")
    print(f"answers over {ANSWER_LIMIT:g} s  {tally.over_limit}")
    print(f"no answer in {REQUEST_TIMEOUT:g} s  {tally.timeouts}")
    print(f"503 w/o Retry-After {tally.no_retry_after}")
    print(
        f"ready after db back {ready_after:.2f} s (/ready while the database was down: "
        f"{faults.ready_while_down})"
    )
    print(
        f"also                {counts['unacknowledged stored']} stored users never "
        f"acknowledged (answers lost in the kill), {counts['work documents']} work documents"
        " left (passwords waiting for the hasher, slow steps)"
    )
    print("answers             " + ", ".join(f"{k}: {v}" for k, v in tally.outcomes.items()))
    failures = []
    if lost:
        failures.append(f"{lost} acknowledged users lost")
    if not_processed:
        failures.append(f"{not_processed} not processed {PROCESSED_LIMIT:g} s after the load")
    if tally.over_limit or tally.timeouts:
        failures.append(f"{tally.over_limit + tally.timeouts} requests left unanswered")
    if ready_after > READY_LIMIT:
        failures.append(f"/ready took over {READY_LIMIT:g} s after the database came back")
    if tally.no_retry_after:
        failures.append(f"{tally.no_retry_after} answers 503 without Retry-After")
    if faults.ready_while_down != 503:
        failures.append(f"/ready answered {faults.ready_while_down} with the database down")
    return failures
