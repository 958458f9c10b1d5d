"""``benchmark.run.store.MongoStore`` on the real database: the counts and reads the tools use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pymongo
from twisted.trial.unittest import SynchronousTestCase

from benchmark.run.store import MongoStore
from tests.support import database_uri


class MongoStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.uri = database_uri()
        self.database = f"squad_test_{uuid.uuid4().hex[:12]}"
        client: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=3000)
        self.addCleanup(client.close)
        self.addCleanup(client.drop_database, self.database)
        now = datetime(2026, 12, 1, tzinfo=UTC)
        client[self.database]["users"].insert_many(
            [
                {"processed": True, "date_created": now, "date_updated": now, "password_hash": "h"},
                {"processed": False, "date_created": now, "date_updated": now, "email": "a@b.co"},
                {"processed": False, "date_created": now, "date_updated": now},
            ]
        )
        self.store = MongoStore(self.uri, self.database)
        self.addCleanup(self.store.close)

    def test_counts(self) -> None:
        """All users, those not processed and those without a password hash are counted."""
        self.assertEqual(self.store.count_users(), 3)
        self.assertEqual(self.store.count_unprocessed(), 2)
        self.assertEqual(self.store.count_unhashed(), 2)

    def test_user_dates_read_only_the_dates_and_processed(self) -> None:
        """``user_dates`` gives each user's two dates and ``processed``, nothing else."""
        dates = self.store.user_dates()
        self.assertEqual(len(dates), 3)
        for user in dates:
            self.assertEqual(set(user), {"date_created", "date_updated", "processed"})
        self.assertEqual(sorted(user["processed"] for user in dates), [False, False, True])
