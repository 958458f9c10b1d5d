"""The fast paths of our FerretDB (docs/database.md, sections 8 to 10, 12 and 13) answer exactly as
its general path does.

Two private FerretDB servers run side by side, one with the fast paths and one with
``SQUAD_FERRETDB_FAST_PATHS=0``; seeded random documents and operations go to both, and every
reply and, after every few operations, each whole collection (documents, field order and
value types) must be the same on both. The operations are the shapes the fast paths take
(``$set`` of top-level scalars by ``_id`` or ``_id: {$in}``, deletes by ``_id``, inserts in one
statement) and their near misses, which must fall back.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64, ObjectId
from pymongo import UpdateMany, UpdateOne
from twisted.trial.unittest import TestCase
from txmongo.connection import ConnectionPool

from tests.integration.test_ferretdb_patches import private_ferretdb
from tests.support import PrivateDatabase

FIELDS = ["processed", "date_updated", "password_hash", "n", "s", "x", "é", "a b"]
#: Names the fast path must leave to the general path (or that the server refuses).
ODD_FIELDS = ["_id", "a.b", "$x", 'q"', "back\\slash"]


class Scenario:
    """Random documents and operations from one seed, with ids of both kinds."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        hexes = [f"{seed:08x}{n:016x}" for n in range(24)]
        self.object_ids: list[Any] = [ObjectId(h) for h in hexes]
        self.string_ids: list[Any] = [f"user-{n}" for n in range(20)]
        # strings spelling an ObjectId's hex digits: they must never match that ObjectId
        self.lookalikes: list[Any] = hexes[:4]
        self.absent: list[Any] = [ObjectId(), "user-absent"]

    def any_id(self) -> Any:
        rng = self.rng
        pool = rng.choice(
            [self.object_ids, self.string_ids, self.object_ids, self.lookalikes, self.absent]
        )
        return rng.choice(pool)

    def scalar(self) -> Any:
        rng = self.rng
        kind = rng.randrange(12)
        if kind == 0:
            return rng.random() < 0.5
        if kind == 1:
            return rng.choice(["", "x", "<&>", 'q"uote', "ünï\u2028", "\\", "\x01", "a" * 300])
        if kind == 2:
            return rng.randrange(-3, 3)
        if kind == 3:
            return Int64(rng.choice([0, 1, 2, -(2**62), 2**53 + 1]))
        if kind == 4:
            return rng.choice([1.5, -2.25, 0.1 + 0.2, 1e300, 3.0, 1.0, 2.0, 0.0, -0.0])
        if kind == 5:
            return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(0, 3))
        if kind == 6:
            return rng.choice(self.object_ids[:3])
        if kind == 7:
            return None
        if kind == 8:
            return rng.randrange(2**31, 2**40)  # an int64 from Python
        if kind == 9:
            return float(rng.randrange(3))
        if kind == 10:
            return str(rng.randrange(3))
        return rng.choice([True, 1, 1.0, "1"])

    def value(self, storable: bool = False) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.06:
            return {"nested": self.scalar()}
        if roll < 0.1:
            return [self.scalar(), self.scalar()]
        if roll < 0.11 and not storable:
            return float("inf")  # refused
        return self.scalar()

    def document(self, doc_id: Any) -> dict[str, Any]:
        names = self.rng.sample(FIELDS, self.rng.randrange(0, 5))
        return {"_id": doc_id, **{name: self.value(storable=True) for name in names}}

    def field(self) -> str:
        return self.rng.choice(ODD_FIELDS) if self.rng.random() < 0.04 else self.rng.choice(FIELDS)

    def set_fields(self) -> dict[str, Any]:
        return {self.field(): self.value() for _ in range(self.rng.choice([1, 1, 2, 2, 3, 4]))}

    def id_filter(self) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return {"_id": self.any_id()}
        if roll < 0.85:
            kind = rng.choice([self.object_ids, self.string_ids, self.object_ids + self.absent])
            ids = rng.sample(kind, rng.randrange(1, 8))
            if rng.random() < 0.2:
                ids.append(ids[0])  # a duplicate
            if rng.random() < 0.1:
                ids.append(rng.choice(self.lookalikes + self.string_ids))  # mixed kinds
            return {"_id": {"$in": ids}}
        # near misses: not a pure _id filter
        return rng.choice(
            [
                {"_id": self.any_id(), "n": 1},
                {"n": rng.randrange(-1, 2)},
                {"processed": True},
                {"_id": {"$in": []}},
                {"_id": {"$in": [1, 2]}},
                {"_id": {"$eq": self.any_id()}},
                {"_id": {"$in": rng.sample(self.object_ids, 2), "$ne": self.object_ids[0]}},
                {},
            ]
        )

    def update(self) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            return {"$set": self.set_fields()}
        if roll < 0.82:
            return {"$set": self.set_fields(), "$inc": {"n": 1}}
        if roll < 0.88:
            return {"$unset": {self.field(): ""}}
        if roll < 0.92:
            return {"$inc": {rng.choice(FIELDS): rng.choice([1, 1.5])}}
        if roll < 0.95:
            return {"$set": {"date_updated": datetime(2026, 2, 2, tzinfo=UTC)}, "$unset": {"s": ""}}
        if roll < 0.97:
            return {"$set": {}}
        return {"$set": {"nested": {"processed": True}, "processed": True}}

    def operation(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return "update_many", (self.id_filter(), self.update()), {}
        if roll < 0.6:
            if rng.random() < 0.05:  # by _id, or each server would make up its own
                return "update_one", ({"_id": self.any_id()}, self.update()), {"upsert": True}
            return "update_one", (self.id_filter(), self.update()), {}
        if roll < 0.68:
            requests = [
                rng.choice([UpdateOne, UpdateMany])(self.id_filter(), self.update())
                for _ in range(rng.randrange(1, 8))
            ]
            return "bulk_write", (requests,), {"ordered": rng.random() < 0.5}
        if roll < 0.76:
            return "delete_many", (self.id_filter(),), {}
        if roll < 0.8:
            return "delete_one", (self.id_filter(),), {}
        if roll < 0.9:
            return "insert_one", (self.document(self.any_id()),), {}
        # ids may repeat within the list or be there already: the whole message must fail alike
        documents = [self.document(self.any_id()) for _ in range(rng.randrange(1, 6))]
        return "insert_many", (documents,), {"ordered": rng.random() < 0.5}


def typed(value: Any) -> Any:
    """A value with every type spelt out, so that 1, 1.0 and True differ and order counts."""
    if isinstance(value, dict):
        return ("doc", [(key, typed(v)) for key, v in value.items()])
    if isinstance(value, list):
        return ("array", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def reply(result: Any) -> Any:
    raw = getattr(result, "raw_result", None) or getattr(result, "bulk_api_result", None)
    if raw is not None:
        return typed(raw)
    for name in ("deleted_count", "inserted_id", "inserted_ids"):
        if hasattr(result, name):
            return typed({name: getattr(result, name)})
    return typed(repr(result))


async def run(collection: Any, name: str, args: tuple[Any, ...], extra: dict[str, Any]) -> Any:
    try:
        return reply(await getattr(collection, name)(*args, **extra))
    except Exception as error:  # every refusal must be the same refusal
        return ("error", type(error).__name__, str(error))


class FastPathDifferentialTests(TestCase):
    """One random workload through the fast paths and through the general path."""

    timeout = 120

    async def servers(self) -> tuple[Any, Any]:
        fast = private_ferretdb(self)
        general = PrivateDatabase(self, environment={"SQUAD_FERRETDB_FAST_PATHS": "0"})
        await fast.start()
        await general.start()
        collections = []
        for server in (fast, general):
            pool = ConnectionPool(server.uri)
            self.addCleanup(pool.disconnect)
            collections.append(pool.differential.users)
        return collections[0], collections[1]

    async def test_random_operations_answer_and_store_alike(self) -> None:
        """1,600 random operations (4 seeds of 400) get the same replies, counts and errors from
        both servers, and leave the same documents, with the same field order and types (checked
        every 4 operations): $set of present and new fields with the same or another scalar
        type, nested values, odd field names, $inc and $unset mixed in, upserts;
        update_one/update_many/delete_one/delete_many and bulk messages of 1-7 updates (runs of
        fast updates in one transaction, between general ones); by _id or _id $in with ObjectId
        and string ids, present, absent and look-alike, and filters that are not by _id;
        insert_one and ordered or unordered insert_many whose ids may repeat or be there."""
        fast, general = await self.servers()
        operations = 0
        for seed in range(4):
            scenario = Scenario(seed)
            await fast.drop()
            await general.drop()
            documents = [
                scenario.document(i) for i in scenario.object_ids[:18] + scenario.string_ids[:16]
            ]
            for target in (fast, general):
                await target.insert_many([dict(d) for d in documents])
            for step in range(400):
                name, args, extra = scenario.operation()
                answers = [await run(c, name, args, extra) for c in (fast, general)]
                operations += 1
                where = f"seed {seed}, step {step}: {name}{args} {extra}"
                self.assertEqual(answers[0], answers[1], where)
                if step % 4 == 3 or step == 399:
                    stored = [typed(await c.find({})) for c in (fast, general)]
                    self.assertEqual(stored[0], stored[1], where)
        self.assertEqual(operations, 1600)
