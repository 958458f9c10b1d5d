"""Sign-ups for the tests, and the user the API answers with: plain data, no squad, no database.

Unit, integration and tooling tests all read these; the hostile corpus builds its cases on
``VALID_SIGNUP``. Like the corpus, this states the contract, not the implementation.
"""

from __future__ import annotations

import uuid

__all__ = ["USER_FIELDS", "VALID_PASSWORD", "VALID_SIGNUP", "signup"]

VALID_PASSWORD = "correct horse battery staple"
VALID_SIGNUP: dict[str, object] = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
    "username": "ada_lovelace",
    "password": VALID_PASSWORD,
}
# The fields of a user in every answer that shows one (201 and GET /users/{id}), and no other.
USER_FIELDS = frozenset(
    {
        "_id",
        "firstName",
        "lastName",
        "email",
        "username",
        "processed",
        "date_created",
        "date_updated",
    }
)


def signup(n: int) -> dict[str, object]:
    """A valid sign-up whose email and username no other call of this run shares."""
    tag = uuid.uuid4().hex[:8]
    return {
        **VALID_SIGNUP,
        "email": f"ada.{tag}.{n}@example.com",
        "username": f"ada_{tag}_{n}",
    }
