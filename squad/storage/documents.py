"""The shapes squad stores and answers: user documents and their JSON form.

One place knows the field names, so the HTTP layer, the store and the slow step agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from squad.signup import SignUp

__all__ = [
    "bson_now",
    "new_user_document",
    "retrying_fields",
    "user_json",
    "verified_fields",
]

#: The fields a client sees; everything else in the document (password hash, slow-step progress)
#: stays inside.
PUBLIC_FIELDS = ("firstName", "lastName", "email", "username", "processed")


def bson_now(seconds: float) -> datetime:
    """A UTC datetime at BSON's millisecond precision, so what we answer equals what we stored."""
    millis = int(seconds * 1000)
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as mobile clients parse it."""
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    # Formatted by hand: strftime and astimezone weighed on every answer (docs/performance.md,
    # "Dates formatted by hand").
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def new_user_document(user_id: ObjectId, signup: SignUp, now: datetime) -> dict[str, Any]:
    """The user as first stored: not processed yet, and without any form of the password.

    The password travels separately, sealed, to the background hasher (see squad.passwords);
    the user document gets only its salted hash.
    """
    return {
        "_id": user_id,
        "firstName": signup.first_name,
        "lastName": signup.last_name,
        "email": signup.email,
        "username": signup.username,
        "processed": False,
        "date_created": now,
        "date_updated": now,
    }


def user_json(document: dict[str, Any]) -> bytes:
    """The public JSON form of a stored user: never the password nor its hash."""
    body: dict[str, Any] = {"_id": str(document["_id"])}
    for field in PUBLIC_FIELDS:
        body[field] = document.get(field)
    body["processed"] = bool(body["processed"])
    created, updated = document["date_created"], document["date_updated"]
    body["date_created"] = iso(created)
    # A new user's two dates are the same object: formatted once.
    body["date_updated"] = body["date_created"] if updated is created else iso(updated)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def verified_fields(attempts: int) -> dict[str, Any]:
    """What a user's document gets once its slow step succeeded (the store adds
    ``date_updated``): ``processed``, and, when ``attempts`` is not 0 (the step was retried,
    or resumed after a take-over), the final record of the tries, which overwrites a
    ``"retrying"`` one. Top-level scalars only, so that the update stays on the database's
    fast path."""
    if not attempts:
        return {"processed": True}
    return {"processed": True, "verification_state": "verified", "verification_attempts": attempts}


def retrying_fields(attempts: int, error: str, at: datetime) -> dict[str, Any]:
    """What a user's document shows while its slow step is retried after a failure."""
    return {
        "verification_state": "retrying",
        "verification_attempts": attempts,
        "verification_error": error,
        "verification_attempted_at": at,
    }
