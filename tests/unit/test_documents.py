"""The stored user and its JSON answer: dates as mobile clients parse them, nothing secret."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone

from bson import ObjectId
from twisted.trial.unittest import SynchronousTestCase

from squad.storage.documents import bson_now, iso, user_json


def _reference_iso(moment: datetime) -> str:
    """The plain-library way of writing the contract's date form, to compare with."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class IsoTests(SynchronousTestCase):
    def test_utc_with_milliseconds_and_a_z(self) -> None:
        """A BSON date (naive, UTC) is written with milliseconds, zero-padded, and a Z."""
        self.assertEqual(iso(datetime(2026, 3, 4, 5, 6, 7, 8_000)), "2026-03-04T05:06:07.008Z")
        self.assertEqual(
            iso(datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
            "2026-12-31T23:59:59.999Z",
        )

    def test_other_zones_are_converted_to_utc(self) -> None:
        """An aware date in another zone is the same instant written in UTC."""
        paris = timezone(timedelta(hours=1))
        self.assertEqual(
            iso(datetime(2026, 1, 1, 0, 30, 0, 250_000, tzinfo=paris)),
            "2025-12-31T23:30:00.250Z",
        )

    def test_agrees_with_strftime(self) -> None:
        """Across many random instants, the hand-written form equals strftime's."""
        rng = random.Random(7)
        for _ in range(2_000):
            moment = bson_now(rng.uniform(0, 4_102_444_800))  # 1970 to 2100
            self.assertEqual(iso(moment), _reference_iso(moment))
            naive = moment.replace(tzinfo=None)
            self.assertEqual(iso(naive), _reference_iso(naive))


class UserJsonTests(SynchronousTestCase):
    def test_public_fields_and_both_dates(self) -> None:
        """The answer has the contract's fields, both dates (also when they differ), and no
        password or hash even when the document carries one."""
        created = bson_now(1_800_000_000.123)
        updated = bson_now(1_800_000_009.5)
        user_id = ObjectId()
        body = json.loads(
            user_json(
                {
                    "_id": user_id,
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "email": "ada@example.org",
                    "username": "ada",
                    "processed": 1,
                    "date_created": created,
                    "date_updated": updated,
                    "password_hash": "$argon2id$...",
                }
            )
        )
        self.assertEqual(body["_id"], str(user_id))
        self.assertIs(body["processed"], True)
        self.assertEqual(body["date_created"], iso(created))
        self.assertEqual(body["date_updated"], iso(updated))
        self.assertNotEqual(body["date_created"], body["date_updated"])
        self.assertNotIn("password_hash", body)
        self.assertNotIn("password", body)
