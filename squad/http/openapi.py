"""The OpenAPI 3.1 description of squad's HTTP API, served at ``GET /openapi.json``.

:data:`OPENAPI` is the document as plain data; :func:`openapi_json` is its serialised form,
built once. The limits and patterns come from :mod:`squad.http.fields`, the error codes and
their statuses from :mod:`squad.http.errors`, so the document cannot drift from what the code
enforces and answers; ``tests.unit.test_openapi`` checks it against the OpenAPI 3.1 schema, the
API's routes and real answer bodies.

One difference between the patterns' two readers remains: Python's ``re.search`` lets a final
``$`` match before a trailing newline, so a Python validator accepts ``"Ada\\n"`` where squad
(and ECMA-262) refuse it; ``tests.unit.test_openapi`` validates with ECMA's meaning.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Final, cast

from squad import __version__
from squad.http.deadlines import REQUEST_DEADLINE_SECONDS
from squad.http.errors import ERRORS, RETRY_AFTER_SECONDS, ErrorKind
from squad.http.fields import (
    EMAIL,
    EMAIL_MAX_LOCAL_LENGTH,
    FIELDS,
    FIRST_NAME,
    IDEMPOTENCY_KEY,
    LAST_NAME,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_NESTING,
    MAX_REQUEST_LINE_BYTES,
    PASSWORD,
    PASSWORD_MAX_BYTES,
    USER_ID,
    USERNAME,
    FieldRule,
)
from squad.http.idempotency import IDEMPOTENCY_WINDOW_SECONDS

__all__ = ["OPENAPI", "openapi_json"]

_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"
_HEADERS = "#/components/headers/"
_PARAMETERS = "#/components/parameters/"

_OBJECT_ID_PATTERN: Final = r"^[0-9a-f]{24}$"


def _text(template: str, **figures: object) -> str:
    """``template`` with ``{code.code}`` and ``{code.status}`` filled from the table of errors
    for any machine code, and ``{name}`` from ``figures``."""
    return template.format_map({**ERRORS, **figures})


def _ref(target: str) -> dict[str, object]:
    return {"$ref": target}


def _error_answer(description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(_SCHEMAS + "Error")}},
    }


def _status(kind: ErrorKind) -> str:
    return str(kind.status)


def _answers(template: str, *kinds: ErrorKind, **figures: object) -> dict[Any, Any]:
    """The documented answer of ``kinds``, keyed by the status they share; ``template`` as
    :func:`_text` reads it."""
    statuses = {kind.status for kind in kinds}
    if len(statuses) != 1:
        raise ValueError(f"one documented answer cannot have the statuses {sorted(statuses)}")
    return {_status(kinds[0]): _error_answer(_text(template, **figures))}


def _name_field(rule: FieldRule, example: str) -> dict[str, object]:
    return {
        "type": "string",
        "minLength": rule.min_length,
        "maxLength": rule.max_length,
        "pattern": rule.pattern,
        "description": (
            f"{rule.name}: {rule.min_length} to {rule.max_length} characters "
            "(Unicode code points). "
            "Any characters except control characters (C0, DEL, C1), the bidirectional "
            "controls U+202A-U+202E and U+2066-U+2069 (they make text display other than it "
            "reads) and lone surrogates; leading or trailing whitespace is refused, not "
            "trimmed. Stored as sent."
        ),
        "examples": [example],
    }


_SIGNUP: Final[dict[str, object]] = {
    "type": "object",
    "description": (
        f"A sign-up: exactly these five string fields, in a JSON object of at most "
        f"{MAX_BODY_BYTES} bytes of UTF-8, nested at most {MAX_NESTING} levels deep, without "
        "duplicate keys, NaN or Infinity, and without keys that start with '$' or contain '.' "
        "or NUL."
    ),
    "required": list(FIELDS),
    "additionalProperties": False,
    "properties": {
        FIRST_NAME.name: _name_field(FIRST_NAME, "Ada"),
        LAST_NAME.name: _name_field(LAST_NAME, "Lovelace"),
        EMAIL.name: {
            "type": "string",
            "format": "email",
            "maxLength": EMAIL.max_length,
            "pattern": EMAIL.pattern,
            "description": (
                f"ASCII only, at most {EMAIL.max_length} characters: a dot-atom local part of "
                f"at most {EMAIL_MAX_LOCAL_LENGTH} characters (no quoted strings or comments), "
                "one '@', then at least two dot-separated labels of letters, digits and inner "
                "hyphens, the last one two or more letters or an xn-- label (internationalised "
                "domains in their xn-- form). No IP literals. The domain is stored lowercased; "
                "the local part as sent."
            ),
            "examples": ["ada@example.com"],
        },
        USERNAME.name: {
            "type": "string",
            "minLength": USERNAME.min_length,
            "maxLength": USERNAME.max_length,
            "pattern": USERNAME.pattern,
            "description": (
                f"{USERNAME.min_length} to {USERNAME.max_length} characters of "
                "A-Z a-z 0-9 . _ -, starting with a letter or a digit; case is preserved."
            ),
            "examples": ["ada_lovelace"],
        },
        PASSWORD.name: {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "minLength": PASSWORD.min_length,
            "maxLength": PASSWORD.max_length,
            "pattern": PASSWORD.pattern,
            "description": (
                f"{PASSWORD.min_length} to {PASSWORD.max_length} characters and at most "
                f"{PASSWORD_MAX_BYTES} bytes of UTF-8; anything except NUL and lone surrogates. "
                "Whitespace is kept. Stored only as a salted argon2id hash; never answered."
            ),
            "examples": ["correct horse battery staple"],
        },
    },
}

_USER: Final[dict[str, object]] = {
    "type": "object",
    "description": "A user as the API shows it: never the password, nor its hash.",
    "required": [
        "_id",
        "firstName",
        "lastName",
        "email",
        "username",
        "processed",
        "date_created",
        "date_updated",
    ],
    "additionalProperties": False,
    "properties": {
        "_id": {
            "type": "string",
            "pattern": _OBJECT_ID_PATTERN,
            "description": "The user's id: a MongoDB ObjectId as 24 lowercase hexadecimal digits.",
            "examples": ["65f1c0ffee0123456789abcd"],
        },
        "firstName": {"type": "string"},
        "lastName": {"type": "string"},
        "email": {"type": "string", "description": "As stored: the domain lowercased."},
        "username": {"type": "string"},
        "processed": {
            "type": "boolean",
            "description": (
                "false until the slow verification step has run for this user, then true. "
                "Always false in the answer to POST /users."
            ),
        },
        "date_created": {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 in UTC with milliseconds, like 2024-03-13T09:30:00.123Z.",
        },
        "date_updated": {
            "type": "string",
            "format": "date-time",
            "description": "When the user last changed (set again when processed becomes true).",
        },
    },
}

_ERROR: Final[dict[str, object]] = {
    "type": "object",
    "description": (
        "Every error answer. Further detail fields may be added; clients should ignore the "
        "ones they do not know."
    ),
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "enum": [kind.code for kind in ErrorKind],
            "description": "A machine code, stable across releases: branch on this. "
            + "; ".join(f"{kind.code} ({kind.status})" for kind in ErrorKind)
            + ".",
        },
        "message": {
            "type": "string",
            "description": (
                "A sentence for a person: what was wrong and how to fix it. Never holds a "
                "value from the request body."
            ),
        },
        "field": {
            "type": "string",
            "description": "The field (or JSON key) at fault, when there is one.",
        },
    },
    "examples": [
        {
            "error": ErrorKind.TOO_SHORT.code,
            "message": f"{PASSWORD.name} must be at least {PASSWORD.min_length} characters long.",
            "field": PASSWORD.name,
        },
    ],
}

OPENAPI: Final[dict[str, object]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "squad",
        "version": __version__,
        "summary": "Sign-up service: stores a user, answers at once, verifies it afterwards.",
        "description": _text(
            "POST /users stores a sign-up and answers 201 once the database acknowledged it; a "
            "slow verification step then runs in the background and sets the user's processed "
            "flag to true. Every error answer is a JSON object in the Error schema. An unknown "
            "address answers {not_found.status} ({not_found.code}) and a method a route does not "
            "accept answers {method_not_allowed.status} ({method_not_allowed.code}) with an Allow "
            "header."
        ),
    },
    "tags": [
        {"name": "users", "description": "Sign-ups and their users."},
        {"name": "operations", "description": "Health, readiness, metrics, maintenance."},
    ],
    "paths": {
        "/health": {
            "get": {
                "tags": ["operations"],
                "operationId": "health",
                "summary": "Liveness: the process serves requests.",
                "responses": {"204": {"description": "The process is serving."}},
            }
        },
        "/ready": {
            "get": {
                "tags": ["operations"],
                "operationId": "ready",
                "summary": "Readiness: the database answers.",
                "responses": {
                    "204": {"description": "The database answers: send traffic here."},
                    _status(ErrorKind.DATABASE_UNAVAILABLE): _ref(_RESPONSES + "Unavailable"),
                },
            }
        },
        "/users": {
            "post": {
                "tags": ["users"],
                "operationId": "createUser",
                "summary": "Sign a user up.",
                "description": _text(
                    "Validates the body strictly (the first rule broken is reported), stores the "
                    "user with processed false and answers 201 only once the database "
                    "acknowledged the write. A refused request stores nothing. When the "
                    "database cannot take the write in time, or the service sheds load, the "
                    "answer is a quick {overloaded.status} with Retry-After, never a hang."
                ),
                "parameters": [_ref(_PARAMETERS + "IdempotencyKey")],
                "requestBody": {
                    "required": True,
                    "description": _text(
                        "Content-Type must be application/json (a charset parameter, if any, "
                        "must be UTF-8); anything else is refused with "
                        "{unsupported_media_type.status}."
                    ),
                    "content": {"application/json": {"schema": _ref(_SCHEMAS + "SignUp")}},
                },
                "responses": {
                    "201": {
                        "description": (
                            "Stored. The body is the new user; a retry with the same "
                            "Idempotency-Key gets this same answer again."
                        ),
                        "headers": {"Location": _ref(_HEADERS + "Location")},
                        "content": {"application/json": {"schema": _ref(_SCHEMAS + "User")}},
                    },
                    _status(ErrorKind.INVALID_JSON): _ref(_RESPONSES + "BadRequest"),
                    **_answers(
                        "The body is larger than {limit} bytes ({body_too_large.code}). "
                        "The connection is closed after this answer.",
                        ErrorKind.BODY_TOO_LARGE,
                        limit=MAX_BODY_BYTES,
                    ),
                    **_answers(
                        "The Content-Type is not application/json "
                        "({unsupported_media_type.code}), or names a charset other than UTF-8 "
                        "({unsupported_charset.code}).",
                        ErrorKind.UNSUPPORTED_MEDIA_TYPE,
                        ErrorKind.UNSUPPORTED_CHARSET,
                    ),
                    **_answers(
                        "A request with the same Idempotency-Key is still being stored "
                        "({request_in_progress.code}): retry in a moment to get its answer. "
                        "Nothing was stored by this request.",
                        ErrorKind.REQUEST_IN_PROGRESS,
                    ),
                    **_answers(
                        "The Idempotency-Key was already used, within {hours} hours, with a "
                        "different body ({idempotency_key_reused.code}). Nothing was stored.",
                        ErrorKind.IDEMPOTENCY_KEY_REUSED,
                        hours=IDEMPOTENCY_WINDOW_SECONDS // 3600,
                    ),
                    _status(ErrorKind.OVERLOADED): _ref(_RESPONSES + "Unavailable"),
                },
            }
        },
        "/users/{id}": {
            "get": {
                "tags": ["users"],
                "operationId": "getUser",
                "summary": "A user, with processed as it stands now.",
                "parameters": [_ref(_PARAMETERS + "UserId")],
                "responses": {
                    "200": {
                        "description": "The user.",
                        "content": {"application/json": {"schema": _ref(_SCHEMAS + "User")}},
                    },
                    **_answers(
                        "The id is not {digits} hexadecimal digits ({invalid_id.code}, field "
                        "{field}).",
                        ErrorKind.INVALID_ID,
                        digits=USER_ID.max_length,
                        field=USER_ID.name,
                    ),
                    **_answers(
                        "There is no user with this id ({user_not_found.code}).",
                        ErrorKind.USER_NOT_FOUND,
                    ),
                    _status(ErrorKind.DATABASE_UNAVAILABLE): _ref(_RESPONSES + "Unavailable"),
                },
            }
        },
        "/collections": {
            "delete": {
                "tags": ["operations"],
                "operationId": "deleteCollections",
                "summary": "Delete every user and all pending work (tests and benchmarks only).",
                "description": (
                    "Enabled only when the service runs with --allow-flush "
                    "(SQUAD_ALLOW_FLUSH=1); otherwise the address does not exist. Never enable "
                    "it in production."
                ),
                "responses": {
                    "204": {"description": "Every user was deleted and pending slow work dropped."},
                    **_answers(
                        "The service runs without --allow-flush, so this address does not "
                        "exist ({not_found.code}).",
                        ErrorKind.NOT_FOUND,
                    ),
                    _status(ErrorKind.DATABASE_UNAVAILABLE): _ref(_RESPONSES + "Unavailable"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics of the whole service (all worker processes).",
                "responses": {
                    "200": {
                        "description": (
                            "The Prometheus text exposition format, version 0.0.4 "
                            "(Content-Type: text/plain; version=0.0.4; charset=utf-8)."
                        ),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "tags": ["operations"],
                "operationId": "openapi",
                "summary": "This OpenAPI 3.1 description.",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {"SignUp": _SIGNUP, "User": _USER, "Error": _ERROR},
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": _text(
                    "Makes retries safe: within {hours} hours, a request with the same key and "
                    "the same body answers the first request's status and body again and "
                    "creates nothing; the same key with a different body answers "
                    "{idempotency_key_reused.status}. A request whose key's first request is "
                    "still in flight waits for its answer ({request_in_progress.status} if it is "
                    "still unknown near the deadline). A key longer than {longest} characters or "
                    "with characters other than printable ASCII is refused with "
                    "{invalid_idempotency_key.status} ({invalid_idempotency_key.code}). Use a new "
                    "random key (a UUID) per sign-up, and the same key for its retries.",
                    hours=IDEMPOTENCY_WINDOW_SECONDS // 3600,
                    longest=IDEMPOTENCY_KEY.max_length,
                ),
                "schema": {
                    "type": "string",
                    "minLength": IDEMPOTENCY_KEY.min_length,
                    "maxLength": IDEMPOTENCY_KEY.max_length,
                    "pattern": IDEMPOTENCY_KEY.pattern,
                },
                "example": "9b2f6a3e-4d1c-4f7e-8a3b-2c5d6e7f8a9b",
            },
            "UserId": {
                "name": "id",
                "in": "path",
                "required": True,
                "description": (
                    f"The user's {USER_ID.name}: {USER_ID.max_length} hexadecimal digits."
                ),
                "schema": {"type": "string", "pattern": USER_ID.pattern},
                "example": "65f1c0ffee0123456789abcd",
            },
        },
        "headers": {
            "Location": {
                "description": "The new user's address, /users/<_id>.",
                "required": True,
                "schema": {"type": "string", "pattern": r"^/users/[0-9a-f]{24}$"},
            },
            "RetryAfter": {
                "description": (
                    f"Seconds to wait before retrying (currently {RETRY_AFTER_SECONDS})."
                ),
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            },
        },
        "responses": {
            "RequestTimeout": _error_answer(
                _text(
                    "The request did not arrive whole, headers and body, within "
                    "--request-timeout seconds ({deadline:g} by default) of its first byte "
                    "({request_timeout.code}). Nothing was stored; the connection is closed "
                    "after this answer.",
                    deadline=REQUEST_DEADLINE_SECONDS,
                )
            ),
            "UriTooLong": _error_answer(
                _text(
                    "The request line (its method, address and version) is longer than {line} "
                    "bytes ({uri_too_long.code}). Nothing was read further and nothing stored; "
                    "the connection is closed after this answer.",
                    line=MAX_REQUEST_LINE_BYTES,
                )
            ),
            "HeadersTooLarge": _error_answer(
                _text(
                    "The request has more than {count} headers, a header line longer than "
                    "{line} bytes, or more than {head} bytes of request line and headers "
                    "together ({headers_too_large.code}). Nothing was stored; the connection "
                    "is closed after this answer.",
                    count=MAX_HEADERS,
                    line=MAX_REQUEST_LINE_BYTES,
                    head=MAX_HEADER_BYTES,
                )
            ),
            "BadRequest": _error_answer(
                "The request was refused and nothing was stored: invalid JSON, a body that is "
                "not an object, unknown, missing, empty, non-string, too short or too long "
                "fields, a bad email or username, forbidden keys, or a malformed "
                "Idempotency-Key. error says which rule, field which field."
            ),
            "Unavailable": {
                "description": _text(
                    "The database did not answer in time ({database_unavailable.code}), the "
                    "service is shedding load ({overloaded.code}), or this process holds too many "
                    "connections ({too_many_connections.code}: the request was not read, and the "
                    "connection is closed). Nothing was stored; retry after Retry-After."
                ),
                "headers": {"Retry-After": _ref(_HEADERS + "RetryAfter")},
                "content": {"application/json": {"schema": _ref(_SCHEMAS + "Error")}},
            },
        },
    },
}


def _answers_to_any_request() -> None:
    # squad.http.site gives these to any request, on any route, before the route sees it: a client
    # too slow to send its request, a process at its connection cap, and a request whose head
    # (request line or headers) is too large.
    paths = cast(dict[str, dict[str, dict[str, dict[str, object]]]], OPENAPI["paths"])
    answers = {
        ErrorKind.REQUEST_TIMEOUT: "RequestTimeout",
        ErrorKind.TOO_MANY_CONNECTIONS: "Unavailable",
        ErrorKind.URI_TOO_LONG: "UriTooLong",
        ErrorKind.HEADERS_TOO_LARGE: "HeadersTooLarge",
    }
    for path_item in paths.values():
        for operation in path_item.values():
            responses = operation["responses"]
            for kind, component in answers.items():
                responses.setdefault(_status(kind), _ref(_RESPONSES + component))


_answers_to_any_request()


@cache
def openapi_json() -> bytes:
    """:data:`OPENAPI` as UTF-8 JSON, serialised on the first call and reused afterwards."""
    return json.dumps(OPENAPI, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
