"""The OpenAPI 3.1 description of squad's HTTP API, served at ``GET /openapi.json``.

:data:`OPENAPI` is the document as plain data; :func:`openapi_json` is its serialised form,
built once. The limits come from :mod:`squad.http.validation` itself, so the two cannot drift apart,
and ``tests.unit.test_openapi`` checks the document against the OpenAPI 3.1 schema, the API's
routes, every error code the code can answer, and real answer bodies.

Patterns are ECMA-262, the dialect JSON Schema specifies, written so Python's ``re`` reads them
the same way: ``\\uXXXX`` escapes, explicit ASCII classes, no ``\\s`` (the two disagree on what
whitespace is). One difference remains: Python's ``re.search`` lets a final ``$`` match before
a trailing newline, so a Python validator accepts ``"Ada\\n"`` where squad (and ECMA) refuse it;
``tests.unit.test_openapi`` validates with ECMA's meaning.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Final, cast

from squad import __version__
from squad.http.errors import RETRY_AFTER_SECONDS
from squad.http.site import REQUEST_DEADLINE_SECONDS
from squad.http.validation import (
    EMAIL_MAX_LENGTH,
    EMAIL_MAX_LOCAL_LENGTH,
    MAX_BODY_BYTES,
    NAME_MAX_LENGTH,
    NAME_MIN_LENGTH,
    PASSWORD_MAX_BYTES,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    USERNAME_MAX_LENGTH,
    USERNAME_MIN_LENGTH,
)

__all__ = [
    "ERROR_CODES",
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "OPENAPI",
    "openapi_json",
]

#: Every machine code an error body's ``error`` may hold, with the status that carries it.
ERROR_CODES: Final[dict[str, int]] = {
    # POST /users, squad.http.validation, in the order its rules are checked.
    "unsupported_media_type": 415,
    "unsupported_charset": 415,
    "body_too_large": 413,
    "invalid_utf8": 400,
    "nesting_too_deep": 400,
    "invalid_json": 400,
    "non_finite_number": 400,
    "duplicate_key": 400,
    "forbidden_key": 400,
    "not_an_object": 400,
    "unknown_field": 400,
    "missing_field": 400,
    "invalid_type": 400,
    "empty_field": 400,
    "too_short": 400,
    "too_long": 400,
    "invalid_characters": 400,
    "surrounding_whitespace": 400,
    "invalid_email": 400,
    "invalid_username": 400,
    "invalid_value": 400,
    "invalid_fields": 400,
    # POST /users, the Idempotency-Key header.
    "invalid_idempotency_key": 400,
    "idempotency_key_reused": 422,
    "request_in_progress": 409,
    # GET /users/{id}.
    "invalid_id": 400,
    "user_not_found": 404,
    # Any route.
    "not_found": 404,
    "method_not_allowed": 405,
    "malformed_http": 400,
    "database_unavailable": 503,
    "overloaded": 503,
    # Any route, answered by squad.http.site before a route sees the request.
    "request_timeout": 408,
    "too_many_connections": 503,
}

IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255

_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"
_HEADERS = "#/components/headers/"
_PARAMETERS = "#/components/parameters/"

# Control characters (C0, DEL, C1), then the whitespace Python's str.isspace() knows beyond them.
_CONTROL: Final = r"\u0000-\u001f\u007f-\u009f"
_SPACE: Final = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NAME_PATTERN: Final = rf"^[^{_SPACE}{_CONTROL}](?:[^{_CONTROL}]*[^{_SPACE}{_CONTROL}])?$"

_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD: Final = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9](?:[A-Za-z0-9-]{0,57}[A-Za-z0-9])?)"
_EMAIL_PATTERN: Final = (
    rf"^(?=[^@]{{1,{EMAIL_MAX_LOCAL_LENGTH}}}@){_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_TLD}$"
)
_USERNAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_NO_NUL_PATTERN: Final = r"^[^\u0000]*$"
_OBJECT_ID_PATTERN: Final = r"^[0-9a-f]{24}$"


def _ref(target: str) -> dict[str, object]:
    return {"$ref": target}


def _error_answer(description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(_SCHEMAS + "Error")}},
    }


def _name_field(name: str, example: str) -> dict[str, object]:
    return {
        "type": "string",
        "minLength": NAME_MIN_LENGTH,
        "maxLength": NAME_MAX_LENGTH,
        "pattern": _NAME_PATTERN,
        "description": (
            f"{name}: {NAME_MIN_LENGTH} to {NAME_MAX_LENGTH} characters (Unicode code points). "
            "Any characters except control characters (C0, DEL, C1) and lone surrogates; "
            "leading or trailing whitespace is refused, not trimmed. Stored as sent."
        ),
        "examples": [example],
    }


_SIGNUP: Final[dict[str, object]] = {
    "type": "object",
    "description": (
        f"A sign-up: exactly these five string fields, in a JSON object of at most "
        f"{MAX_BODY_BYTES} bytes of UTF-8, nested at most 16 levels deep, without duplicate "
        "keys, NaN or Infinity, and without keys that start with '$' or contain '.' or NUL."
    ),
    "required": ["firstName", "lastName", "email", "username", "password"],
    "additionalProperties": False,
    "properties": {
        "firstName": _name_field("firstName", "Ada"),
        "lastName": _name_field("lastName", "Lovelace"),
        "email": {
            "type": "string",
            "format": "email",
            "maxLength": EMAIL_MAX_LENGTH,
            "pattern": _EMAIL_PATTERN,
            "description": (
                f"ASCII only, at most {EMAIL_MAX_LENGTH} characters: a dot-atom local part of "
                f"at most {EMAIL_MAX_LOCAL_LENGTH} characters (no quoted strings or comments), "
                "one '@', then at least two dot-separated labels of letters, digits and inner "
                "hyphens, the last one two or more letters or an xn-- label (internationalised "
                "domains in their xn-- form). No IP literals. The domain is stored lowercased; "
                "the local part as sent."
            ),
            "examples": ["ada@example.com"],
        },
        "username": {
            "type": "string",
            "minLength": USERNAME_MIN_LENGTH,
            "maxLength": USERNAME_MAX_LENGTH,
            "pattern": _USERNAME_PATTERN,
            "description": (
                f"{USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} characters of A-Z a-z 0-9 . _ -, "
                "starting with a letter or a digit; case is preserved."
            ),
            "examples": ["ada_lovelace"],
        },
        "password": {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": PASSWORD_MAX_LENGTH,
            "pattern": _NO_NUL_PATTERN,
            "description": (
                f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters and at most "
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
            "enum": list(ERROR_CODES),
            "description": "A machine code, stable across releases: branch on this. "
            + "; ".join(f"{code} ({status})" for code, status in ERROR_CODES.items())
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
            "error": "too_short",
            "message": "password must be at least 8 characters long.",
            "field": "password",
        },
    ],
}

OPENAPI: Final[dict[str, object]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "squad",
        "version": __version__,
        "summary": "Sign-up service: stores a user, answers at once, verifies it afterwards.",
        "description": (
            "POST /users stores a sign-up and answers 201 once the database acknowledged it; a "
            "slow verification step then runs in the background and sets the user's processed "
            "flag to true. Every error answer is a JSON object in the Error schema. An unknown "
            "address answers 404 (not_found) and a method a route does not accept answers 405 "
            "(method_not_allowed) with an Allow header."
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
                    "503": _ref(_RESPONSES + "Unavailable"),
                },
            }
        },
        "/users": {
            "post": {
                "tags": ["users"],
                "operationId": "createUser",
                "summary": "Sign a user up.",
                "description": (
                    "Validates the body strictly (the first rule broken is reported), stores the "
                    "user with processed false and answers 201 only once the database "
                    "acknowledged the write. A refused request stores nothing. When the "
                    "database cannot take the write in time, or the service sheds load, the "
                    "answer is a quick 503 with Retry-After, never a hang."
                ),
                "parameters": [_ref(_PARAMETERS + "IdempotencyKey")],
                "requestBody": {
                    "required": True,
                    "description": (
                        "Content-Type must be application/json (a charset parameter, if any, "
                        "must be UTF-8); anything else is refused with 415."
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
                    "400": _ref(_RESPONSES + "BadRequest"),
                    "413": _error_answer(
                        f"The body is larger than {MAX_BODY_BYTES} bytes (body_too_large). "
                        "The connection is closed after this answer."
                    ),
                    "415": _error_answer(
                        "The Content-Type is not application/json "
                        "(unsupported_media_type), or names a charset other than UTF-8 "
                        "(unsupported_charset)."
                    ),
                    "409": _error_answer(
                        "A request with the same Idempotency-Key is still being stored "
                        "(request_in_progress): retry in a moment to get its answer. Nothing "
                        "was stored by this request."
                    ),
                    "422": _error_answer(
                        "The Idempotency-Key was already used, within 24 hours, with a "
                        "different body (idempotency_key_reused). Nothing was stored."
                    ),
                    "503": _ref(_RESPONSES + "Unavailable"),
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
                    "400": _error_answer(
                        "The id is not 24 hexadecimal digits (invalid_id, field _id)."
                    ),
                    "404": _error_answer("There is no user with this id (user_not_found)."),
                    "503": _ref(_RESPONSES + "Unavailable"),
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
                    "404": _error_answer(
                        "The service runs without --allow-flush, so this address does not "
                        "exist (not_found)."
                    ),
                    "503": _ref(_RESPONSES + "Unavailable"),
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
                "description": (
                    "Makes retries safe: within 24 hours, a request with the same key and the "
                    "same body answers the first request's status and body again and creates "
                    "nothing; the same key with a different body answers 422. A request whose "
                    "key's first request is still in flight waits for its answer (409 if it is "
                    "still unknown near the deadline). A key longer "
                    f"than {IDEMPOTENCY_KEY_MAX_LENGTH} characters or with characters other than "
                    "printable ASCII is refused with 400 (invalid_idempotency_key). Use a new "
                    "random key (a UUID) per sign-up, and the same key for its retries."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                    "pattern": r"^[\u0020-\u007e]+$",
                },
                "example": "9b2f6a3e-4d1c-4f7e-8a3b-2c5d6e7f8a9b",
            },
            "UserId": {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The user's _id: 24 hexadecimal digits.",
                "schema": {"type": "string", "pattern": r"^[0-9a-fA-F]{24}$"},
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
                "The request did not arrive whole, headers and body, within --request-timeout "
                f"seconds ({REQUEST_DEADLINE_SECONDS:g} by default) of its first byte "
                "(request_timeout). Nothing was stored; the connection is closed after this "
                "answer."
            ),
            "BadRequest": _error_answer(
                "The request was refused and nothing was stored: invalid JSON, a body that is "
                "not an object, unknown, missing, empty, non-string, too short or too long "
                "fields, a bad email or username, forbidden keys, or a malformed "
                "Idempotency-Key. error says which rule, field which field."
            ),
            "Unavailable": {
                "description": (
                    "The database did not answer in time (database_unavailable), the service "
                    "is shedding load (overloaded), or this process holds too many connections "
                    "(too_many_connections: the request was not read, and the connection is "
                    "closed). Nothing was stored; retry after Retry-After."
                ),
                "headers": {"Retry-After": _ref(_HEADERS + "RetryAfter")},
                "content": {"application/json": {"schema": _ref(_SCHEMAS + "Error")}},
            },
        },
    },
}


def _answers_to_any_request() -> None:
    # squad.http.site gives these to any request, on any route, before the route sees it: a client
    # too slow to send its request (408) and a process at its connection cap (503).
    paths = cast(dict[str, dict[str, dict[str, dict[str, object]]]], OPENAPI["paths"])
    for path_item in paths.values():
        for operation in path_item.values():
            operation["responses"].setdefault("408", _ref(_RESPONSES + "RequestTimeout"))
            operation["responses"].setdefault("503", _ref(_RESPONSES + "Unavailable"))


_answers_to_any_request()


@cache
def openapi_json() -> bytes:
    """:data:`OPENAPI` as UTF-8 JSON, serialised on the first call and reused afterwards."""
    return json.dumps(OPENAPI, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
