"""The rules a request's fields must meet, each written once: :mod:`squad.http.validation` and
:mod:`squad.http.idempotency` enforce them, :mod:`squad.http.openapi` describes them.

Lengths count Unicode code points (what ``len()`` gives). Patterns are ECMA-262, the dialect
JSON Schema specifies, written so Python's ``re`` reads them the same way: ``\\uXXXX`` escapes,
explicit ASCII classes, no ``\\s`` (the two disagree on what whitespace is).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "BIDI_CONTROLS",
    "CONTROL_CHARACTERS",
    "EMAIL",
    "EMAIL_DOMAIN",
    "EMAIL_LOCAL_PART",
    "EMAIL_MAX_DOMAIN_LENGTH",
    "EMAIL_MAX_LOCAL_LENGTH",
    "FIELDS",
    "FIELD_LIST",
    "FIRST_NAME",
    "IDEMPOTENCY_KEY",
    "LAST_NAME",
    "MAX_BODY_BYTES",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_NESTING",
    "MAX_REQUEST_LINE_BYTES",
    "NAME_FORBIDDEN",
    "PASSWORD",
    "PASSWORD_MAX_BYTES",
    "SIGNUP_FIELDS",
    "USERNAME",
    "USERNAME_FIRST",
    "USERNAME_REST",
    "USER_ID",
    "WHITESPACE",
    "FieldRule",
]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A string field: its name, its length in code points (a ``min_length`` of 0 leaves the
    minimum to the pattern, as JSON Schema's default does) and a pattern every valid value
    matches whole."""

    name: str
    min_length: int
    max_length: int
    pattern: str


MAX_BODY_BYTES: Final = 16 * 1024
# The head of a request: twisted.web's own limits, stated here so that the answers and the
# document name them and a Twisted upgrade cannot move them unseen. Every line of the head (the
# request line or one header) is at most MAX_REQUEST_LINE_BYTES long; all of them together at
# most MAX_HEADER_BYTES.
MAX_REQUEST_LINE_BYTES: Final = 16 * 1024
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_HEADERS: Final = 500
# A valid sign-up is one flat object; the limit only has to stay far below the interpreter's
# recursion limit while leaving room for precise "must be a string" answers on shallow mistakes.
MAX_NESTING: Final = 16

# Character-class ranges: control characters (C0, DEL, C1), then the whitespace Python's
# str.isspace() knows beyond them.
CONTROL_CHARACTERS: Final = r"\u0000-\u001f\u007f-\u009f"
WHITESPACE: Final = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# The embeddings, overrides and isolates of Unicode's bidirectional algorithm (UAX #9): invisible,
# they make the text around them display in another order than it reads (a "Trojan Source" name).
BIDI_CONTROLS: Final = r"\u202a-\u202e\u2066-\u2069"
#: What a name may not hold anywhere (lone surrogates aside, which JSON Schema cannot express).
NAME_FORBIDDEN: Final = f"{CONTROL_CHARACTERS}{BIDI_CONTROLS}"

_NAME_PATTERN: Final = (
    rf"^[^{WHITESPACE}{NAME_FORBIDDEN}]"
    rf"(?:[^{NAME_FORBIDDEN}]*[^{WHITESPACE}{NAME_FORBIDDEN}])?$"
)

# RFC 5322 atext: the local part of an address is dot-separated runs of it.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
EMAIL_LOCAL_PART: Final = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD: Final = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9](?:[A-Za-z0-9-]{0,57}[A-Za-z0-9])?)"
EMAIL_DOMAIN: Final = rf"(?:{_LABEL}\.)+{_TLD}"
# RFC 5321's limits; the whole address is EMAIL.max_length.
EMAIL_MAX_LOCAL_LENGTH: Final = 64
EMAIL_MAX_DOMAIN_LENGTH: Final = 255

USERNAME_FIRST: Final = "[A-Za-z0-9]"
USERNAME_REST: Final = "[A-Za-z0-9._-]"

# A password is counted in characters, but the hash and the seal take bytes.
PASSWORD_MAX_BYTES: Final = 1024

FIRST_NAME: Final = FieldRule("firstName", 1, 100, _NAME_PATTERN)
LAST_NAME: Final = replace(FIRST_NAME, name="lastName")
EMAIL: Final = FieldRule(
    "email",
    0,
    254,
    rf"^(?=[^@]{{1,{EMAIL_MAX_LOCAL_LENGTH}}}@){EMAIL_LOCAL_PART}@{EMAIL_DOMAIN}$",
)
USERNAME: Final = FieldRule("username", 3, 32, rf"^{USERNAME_FIRST}{USERNAME_REST}*$")
PASSWORD: Final = FieldRule("password", 8, 128, r"^[^\u0000]*$")

#: The five fields of a sign-up, in the order they are checked.
SIGNUP_FIELDS: Final = (FIRST_NAME, LAST_NAME, EMAIL, USERNAME, PASSWORD)
FIELDS: Final = tuple(rule.name for rule in SIGNUP_FIELDS)
FIELD_LIST: Final = f"{', '.join(FIELDS[:-1])} and {FIELDS[-1]}"

IDEMPOTENCY_KEY: Final = FieldRule("Idempotency-Key", 1, 255, r"^[\u0020-\u007e]+$")
#: A user's ``_id`` as a client may send it in a path (either case).
USER_ID: Final = FieldRule("_id", 24, 24, r"^[0-9a-fA-F]{24}$")
