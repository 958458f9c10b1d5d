"""``Idempotency-Key`` on ``POST /users``: a mobile client's retry never creates a second user.

The first request with a key records, before its user is written, the key, a fingerprint of
its body and the exact answer it will give. A retry with the same key within
:data:`IDEMPOTENCY_WINDOW_SECONDS` gets that answer again; if the first try's user never made it
to the database (its write failed after the record), the retry writes it, under the recorded id.
The same key with another body is refused (``IDEMPOTENCY_KEY_REUSED``). The fingerprint is an
HMAC keyed with the seal key: the body holds the password, and a plain hash of it would be a
crackable password hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from squad.http.fields import IDEMPOTENCY_KEY
from squad.signup import SignUp

__all__ = [
    "IDEMPOTENCY_WINDOW_SECONDS",
    "InvalidIdempotencyKey",
    "Recorded",
    "check_key",
    "fingerprint",
    "new_record",
    "recorded",
]

IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
_KEY: Final = re.compile(IDEMPOTENCY_KEY.pattern)


class InvalidIdempotencyKey(ValueError):
    """The header is empty, too long or holds non-printable characters."""


def check_key(raw: bytes | None) -> str | None:
    """The key from the header, or None when the client sent none."""
    if raw is None:
        return None
    try:
        key = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidIdempotencyKey("must be printable ASCII characters") from None
    if not IDEMPOTENCY_KEY.min_length <= len(key) <= IDEMPOTENCY_KEY.max_length:
        raise InvalidIdempotencyKey(
            f"must be {IDEMPOTENCY_KEY.min_length} to {IDEMPOTENCY_KEY.max_length} characters long"
        )
    if _KEY.fullmatch(key) is None:
        raise InvalidIdempotencyKey("must be printable ASCII characters")
    return key


def fingerprint(secret: bytes, signup: SignUp) -> str:
    """Equal for equal sign-ups; reveals nothing about the password without ``secret``."""
    canonical = "\x00".join(
        (signup.first_name, signup.last_name, signup.email, signup.username, signup.password)
    ).encode("utf-8")
    return hmac.new(secret, b"squad-idempotency\x00" + canonical, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """A first answer, as recorded."""

    user_id: ObjectId
    fingerprint: str
    created: datetime
    response: bytes


def new_record(
    key: str, user_id: ObjectId, digest: str, created: datetime, response: bytes
) -> dict[str, Any]:
    return {
        "_id": key,
        "user_id": user_id,
        "fingerprint": digest,
        "created": created,
        "response": response,
    }


def recorded(document: dict[str, Any]) -> Recorded:
    return Recorded(
        user_id=document["user_id"],
        fingerprint=str(document["fingerprint"]),
        created=document["created"],
        response=bytes(document["response"]),
    )
