"""The error answers of the HTTP API: every machine code in one table, and the one function that
renders an answer from it.

An error body is ``{"error": <code>, "message": <sentence>, ...detail}``. :class:`ErrorKind`
gives each code its status and a default sentence; a caller that knows more (which field, which
limit) passes a sentence of its own. :func:`render_error` builds the status, headers and body;
:func:`write_error` puts them on a Twisted request, and :mod:`squad.http.site` writes them
straight to the socket for answers given before a request reaches a route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, unique
from types import MappingProxyType
from typing import Final

from twisted.web.iweb import IRequest

from squad.http.fields import (
    FIELD_LIST,
    IDEMPOTENCY_KEY,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_NESTING,
    MAX_REQUEST_LINE_BYTES,
)
from squad.metrics import SquadMetrics

__all__ = [
    "ERRORS",
    "RETRY_AFTER_SECONDS",
    "ErrorAnswer",
    "ErrorKind",
    "count_error",
    "render_error",
    "write_error",
]

# Mobile clients back off for this long before retrying a shed or failed write: long enough for
# a restarting database to come back, short enough that a person barely notices.
RETRY_AFTER_SECONDS: Final = 1


@unique
class ErrorKind(Enum):
    """Every machine code an error body's ``error`` may hold, with its status and the sentence
    for a person used when the caller gives none; the order is the OpenAPI document's."""

    code: str
    status: int
    message: str
    retry_after: bool

    def __init__(self, code: str, status: int, message: str) -> None:
        self.code = code
        self.status = status
        self.message = message
        # A 503 is always temporary, so it always tells the client when to come back.
        self.retry_after = status == 503

    # POST /users, squad.http.validation, in the order its rules are checked.
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        "Send the body as JSON with the header Content-Type: application/json.",
    )
    UNSUPPORTED_CHARSET = (
        "unsupported_charset",
        415,
        "The body must be encoded as UTF-8: send charset=utf-8 or no charset at all.",
    )
    BODY_TOO_LARGE = (
        "body_too_large",
        413,
        f"The request body is larger than the {MAX_BODY_BYTES // 1024} KiB this service accepts.",
    )
    INVALID_UTF8 = ("invalid_utf8", 400, "The request body is not valid UTF-8.")
    NESTING_TOO_DEEP = (
        "nesting_too_deep",
        400,
        f"The JSON in the body is nested more than {MAX_NESTING} levels deep; "
        "a sign-up is one flat object.",
    )
    INVALID_JSON = ("invalid_json", 400, "The request body is not valid JSON.")
    NON_FINITE_NUMBER = (
        "non_finite_number",
        400,
        "NaN, Infinity and -Infinity are not JSON numbers and are not accepted: "
        "the body must be strict JSON.",
    )
    DUPLICATE_KEY = (
        "duplicate_key",
        400,
        "A key appears more than once in the same object; send each key once.",
    )
    FORBIDDEN_KEY = (
        "forbidden_key",
        400,
        "A key is not allowed: keys may not start with '$' or contain '.' or NUL.",
    )
    NOT_AN_OBJECT = (
        "not_an_object",
        400,
        f"The request body must be a JSON object with the fields {FIELD_LIST}.",
    )
    UNKNOWN_FIELD = (
        "unknown_field",
        400,
        f"The body has an unknown field: a sign-up accepts only {FIELD_LIST}.",
    )
    MISSING_FIELD = ("missing_field", 400, f"A sign-up needs every one of {FIELD_LIST}.")
    INVALID_TYPE = ("invalid_type", 400, "Every field of a sign-up must be a string.")
    EMPTY_FIELD = ("empty_field", 400, "No field of a sign-up may be empty.")
    TOO_SHORT = ("too_short", 400, "A field is shorter than its minimum length.")
    TOO_LONG = ("too_long", 400, "A field is longer than its maximum length.")
    INVALID_CHARACTERS = (
        "invalid_characters",
        400,
        "A field holds characters it may not hold, such as NUL, control characters or "
        "(in names) bidirectional controls.",
    )
    SURROUNDING_WHITESPACE = (
        "surrounding_whitespace",
        400,
        "A name must not start or end with whitespace.",
    )
    INVALID_EMAIL = ("invalid_email", 400, "email must be an address like ada@example.com.")
    INVALID_USERNAME = (
        "invalid_username",
        400,
        "username may only contain letters A-Z, digits, '.', '_' and '-', "
        "and must start with a letter or a digit.",
    )
    # Safety nets: reachable only if a fast path and its diagnosis disagree.
    INVALID_VALUE = ("invalid_value", 400, "A field of the sign-up is not valid.")
    INVALID_FIELDS = ("invalid_fields", 400, f"A sign-up has exactly the fields {FIELD_LIST}.")
    # POST /users, the Idempotency-Key header.
    INVALID_IDEMPOTENCY_KEY = (
        "invalid_idempotency_key",
        400,
        f"The Idempotency-Key header must be {IDEMPOTENCY_KEY.min_length} to "
        f"{IDEMPOTENCY_KEY.max_length} printable ASCII characters.",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        422,
        "This Idempotency-Key was already used with a different sign-up; use a new key"
        " for a new sign-up.",
    )
    REQUEST_IN_PROGRESS = (
        "request_in_progress",
        409,
        "A sign-up with this Idempotency-Key is still being stored; retry in a"
        " moment to get its answer.",
    )
    # GET /users/{id}.
    INVALID_ID = (
        "invalid_id",
        400,
        "A user id is 24 hexadecimal digits, like 65f1c0ffee0123456789abcd.",
    )
    USER_NOT_FOUND = ("user_not_found", 404, "There is no user with this id.")
    # Any route.
    NOT_FOUND = ("not_found", 404, "There is nothing at this address.")
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, "This address does not accept this method.")
    MALFORMED_HTTP = (
        "malformed_http",
        400,
        "The request is not valid HTTP (a malformed header, length or chunk).",
    )
    DATABASE_UNAVAILABLE = (
        "database_unavailable",
        503,
        "The database is not answering right now.",
    )
    OVERLOADED = (
        "overloaded",
        503,
        "The service is busy right now; please try again in a moment.",
    )
    # Any route, answered by squad.http.site before a route sees the request.
    REQUEST_TIMEOUT = (
        "request_timeout",
        408,
        "The request did not arrive completely in time; send it again.",
    )
    TOO_MANY_CONNECTIONS = (
        "too_many_connections",
        503,
        "This server holds too many connections right now; retry in a moment.",
    )
    URI_TOO_LONG = (
        "uri_too_long",
        414,
        f"The request line (method, address and version) is longer than the "
        f"{MAX_REQUEST_LINE_BYTES // 1024} KiB this service reads; use a shorter address.",
    )
    HEADERS_TOO_LARGE = (
        "headers_too_large",
        431,
        f"The request's headers are larger than this service reads: at most {MAX_HEADERS} "
        f"headers, {MAX_HEADER_BYTES // 1024} KiB in all with the request line, and "
        f"{MAX_REQUEST_LINE_BYTES // 1024} KiB per line; send fewer or shorter headers.",
    )


#: The table by machine code, in its order.
ERRORS: Final[Mapping[str, ErrorKind]] = MappingProxyType({kind.code: kind for kind in ErrorKind})

_JSON: Final = (b"Content-Type", b"application/json")
_RETRY_AFTER: Final = (b"Retry-After", str(RETRY_AFTER_SECONDS).encode("ascii"))


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error answer: its status, its headers (``Content-Type`` first) and its JSON body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def render_error(kind: ErrorKind, message: str | None = None, **detail: str | None) -> ErrorAnswer:
    """The answer for ``kind``: its own sentence unless ``message`` is given, and the
    ``detail`` fields (such as ``field``) that are not None."""
    document = {"error": kind.code, "message": kind.message if message is None else message}
    document.update((name, value) for name, value in detail.items() if value is not None)
    return ErrorAnswer(
        kind.status,
        (_JSON, _RETRY_AFTER) if kind.retry_after else (_JSON,),
        json.dumps(document).encode("utf-8"),
    )


def count_error(kind: ErrorKind) -> None:
    """Count one error answer by its machine code, so /metrics tells e.g. a bodyless sign-up
    (invalid_json) from an overload (overloaded); the table bounds the label's values."""
    SquadMetrics.get().errors.labels(kind.code).inc()


def write_error(
    request: IRequest, kind: ErrorKind, message: str | None = None, /, **detail: str | None
) -> bytes:
    """Count an error answer, set its status and headers on ``request`` and return its body."""
    answer = render_error(kind, message, **detail)
    count_error(kind)
    request.setResponseCode(answer.status)
    for name, value in answer.headers:
        request.setHeader(name, value)
    return answer.body
