"""
Strict validation of a ``POST /users`` body, at the edge, before anything is stored.

:func:`check_content_type` vets the ``Content-Type`` header and :func:`parse_signup` turns the raw
body into a :class:`SignUp` or raises :class:`InvalidRequest`, which carries the HTTP status, a
machine code and a sentence for a person. Nothing here does I/O; both functions are safe to call
with any input whatsoever: the only exception they raise is :class:`InvalidRequest`.

The rules, in the order they are checked (the first failure is reported), with the status and
the machine code of each refusal:

- 415 ``unsupported_media_type``: no ``Content-Type``, a type other than ``application/json``,
  or a parameter without a value;
- 415 ``unsupported_charset``: a ``charset`` parameter other than UTF-8;
- 413 ``body_too_large``: a body over 16 KiB (:data:`MAX_BODY_BYTES`);
- 400 ``invalid_utf8``: a body that is not UTF-8;
- 400 ``nesting_too_deep``: arrays or objects nested more than :data:`MAX_NESTING` (16) deep;
- 400 ``invalid_json``: not JSON, an empty body included;
- 400 ``non_finite_number`` (*): ``NaN``, ``Infinity`` or ``-Infinity``;
- 400 ``duplicate_key`` (*): a key twice in one object;
- 400 ``forbidden_key`` (*): a key starting with ``$`` or containing ``.`` or NUL;
- 400 ``not_an_object``: a JSON value other than an object;
- 400 ``unknown_field``: a key other than the five fields;
- 400 ``missing_field``: one of the five fields absent;
- then, field by field: 400 ``invalid_type`` (not a string), ``empty_field``, ``too_short``,
  ``too_long``, ``invalid_characters`` (NUL, control characters, lone surrogates),
  ``surrounding_whitespace`` (names), ``invalid_email``, ``invalid_username``.

(*) Found while parsing, at any depth, so whichever comes first in the body is reported; large
numbers such as ``1e400`` are never converted, so they are simply "not a string". Two further
codes exist only as a safety net and cannot be reached today: ``invalid_value`` and
``invalid_fields`` (both 400).

Fields are checked in the order ``firstName``, ``lastName``, ``email``, ``username``,
``password``; unknown fields are reported before missing ones, because a misspelt key
(``first_name``) is the likelier mistake.

The limits, and the decisions behind them:

- Lengths count Unicode code points (what ``len()`` gives), not bytes or grapheme clusters.
- ``firstName``, ``lastName``: 1 to 100 characters; any characters except control characters
  (C0, DEL, C1) and lone surrogates. Leading or trailing whitespace is *refused*, not trimmed:
  silently changing what a person typed hides client bugs, and a refusal names the problem. Inner
  spaces are fine (``Mary Ann``). No Unicode normalisation is applied; HTML or other markup is
  stored as text (escaping it is the job of whoever renders it).
- ``email``: ASCII only (internationalised domains must arrive in their ``xn--`` form; UTF-8
  local parts, RFC 6531, are refused), exactly one ``@``, the local part a dot-atom of RFC 5322
  ``atext`` (no quoted strings, no comments), the domain dot-separated labels of letters, digits
  and inner hyphens (1 to 63 each), at least two labels, the last one (the TLD) two or more letters
  or an ``xn--`` label; no IP literals. RFC 5321 limits: local part at most 64 characters, domain
  at most 255, whole address at most 254. The domain is lowercased (it is case-insensitive); the
  local part is kept as sent (RFC 5321 says it may be case-sensitive).
- ``username``: 3 to 32 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit;
  kept as sent (case is preserved).
- ``password``: 8 to 128 characters and at most 1024 bytes of UTF-8; anything except NUL and lone
  surrogates (which cannot be encoded). Whitespace is kept: it is part of the secret.

Error messages name the field and the rule; they never contain the password, a field's value or
the raw body. A key is echoed (in ``field`` and in the message) only when it is short printable
ASCII, so a hostile key cannot smuggle control characters or kilobytes into logs and answers
(keys are names, not values: a client that sent its password *as a key* would see it quoted).
Refusals are never raised inside an ``except`` block, so no chained exception (``__context__``)
keeps the body or the password alive, or prints it in a traceback.

Speed, measured on the 2-core development machine (Python 3.11, machine shared and loaded, best
of 5 runs of ``python -m timeit -r 7``, the body a realistic 153-byte sign-up)::

    .venv/bin/python -m timeit -r 7 -s 'import json; from squad.http.validation import parse_signup;
      b = json.dumps(dict(firstName="Ada", lastName="Lovelace", email="ada.lovelace@example.com",
      username="ada_lovelace", password="correct horse battery staple")).encode()' 'parse_signup(b)'

gives 6.8 µs per valid body (the C JSON scanner with its hooks is ~3 µs of it, the frozen
dataclass ~1 µs), and ``check_content_type(b"application/json")`` 0.08 µs. The costliest hostile
bodies, 16 KiB of brackets, are refused in 0.4-0.7 ms, all of it in C loops.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass, field
from itertools import accumulate
from json.scanner import make_scanner
from typing import Final, NoReturn

__all__ = [
    "EMAIL_MAX_DOMAIN_LENGTH",
    "EMAIL_MAX_LENGTH",
    "EMAIL_MAX_LOCAL_LENGTH",
    "FIELDS",
    "MAX_BODY_BYTES",
    "MAX_NESTING",
    "NAME_MAX_LENGTH",
    "NAME_MIN_LENGTH",
    "PASSWORD_MAX_BYTES",
    "PASSWORD_MAX_LENGTH",
    "PASSWORD_MIN_LENGTH",
    "USERNAME_MAX_LENGTH",
    "USERNAME_MIN_LENGTH",
    "InvalidRequest",
    "SignUp",
    "check_content_type",
    "parse_signup",
]

MAX_BODY_BYTES: Final = 16 * 1024
# A valid sign-up is one flat object; the limit only has to stay far below the interpreter's
# recursion limit while leaving room for precise "must be a string" answers on shallow mistakes.
MAX_NESTING: Final = 16

NAME_MIN_LENGTH: Final = 1
NAME_MAX_LENGTH: Final = 100
USERNAME_MIN_LENGTH: Final = 3
USERNAME_MAX_LENGTH: Final = 32
PASSWORD_MIN_LENGTH: Final = 8
PASSWORD_MAX_LENGTH: Final = 128
PASSWORD_MAX_BYTES: Final = 1024
EMAIL_MAX_LENGTH: Final = 254
EMAIL_MAX_LOCAL_LENGTH: Final = 64
EMAIL_MAX_DOMAIN_LENGTH: Final = 255

FIELDS: Final = ("firstName", "lastName", "email", "username", "password")
_FIELD_SET: Final = frozenset(FIELDS)
_FIELD_LIST: Final = "firstName, lastName, email, username and password"


@dataclass(frozen=True, slots=True)
class SignUp:
    """A validated sign-up. The password is plaintext: keep it in memory only, seal it at once."""

    first_name: str
    last_name: str
    email: str
    username: str
    password: str = field(repr=False)


class InvalidRequest(Exception):
    """
    A request refused at the edge.

    ``str(exc)`` is the message, which is safe to log: it never holds a value from the body.
    """

    status: int
    code: str
    message: str
    field: str | None

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        """The contract's JSON error body: ``error``, ``message`` and, when known, ``field``."""
        result: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field is not None:
            result["field"] = self.field
        return result


# ---------------------------------------------------------------------------------------------
# Content type

# Exact spellings real clients send, so the common case is one hash lookup.
_ACCEPTED_CONTENT_TYPES: Final[frozenset[bytes | str]] = frozenset(
    spelling
    for text in (
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "application/json;charset=UTF-8",
    )
    for spelling in (text, text.encode("ascii"))
)
_ACCEPTED_CHARSETS: Final = frozenset({"utf-8", "utf8"})
_PRINTABLE_SHORT: Final = re.compile(r"[\x20-\x7e]{1,64}")


def _echoable(text: str) -> bool:
    """Whether ``text`` may be quoted back: short printable ASCII cannot poison logs or answers."""
    return _PRINTABLE_SHORT.fullmatch(text) is not None


def _unsupported_media_type(detail: str) -> NoReturn:
    raise InvalidRequest(
        415,
        "unsupported_media_type",
        f"{detail} Send the body as JSON with the header Content-Type: application/json.",
    )


def check_content_type(value: bytes | str | None) -> None:
    """
    Refuse (415) any ``Content-Type`` but ``application/json``.

    Parameters are allowed; a ``charset`` parameter must name UTF-8, the only encoding
    :func:`parse_signup` reads. A malformed parameter (no ``=``) is refused.
    """
    if value in _ACCEPTED_CONTENT_TYPES:
        return
    if value is None:
        _unsupported_media_type("The request has no Content-Type header.")
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    media_type, *parameters = text.split(";")
    media_type = media_type.strip()
    if media_type.lower() != "application/json":
        if not media_type:
            _unsupported_media_type("The Content-Type header is empty.")
        if _echoable(media_type):
            _unsupported_media_type(f"The content type {media_type!r} is not supported.")
        _unsupported_media_type("The content type is not supported.")
    for parameter in parameters:
        name, equals, parameter_value = parameter.partition("=")
        name = name.strip()
        if not equals:
            if not name:
                continue  # "application/json;" is sloppy but unambiguous
            _unsupported_media_type("The Content-Type header has a parameter without a value.")
        if name.lower() == "charset":
            charset = parameter_value.strip().strip('"').lower()
            if charset not in _ACCEPTED_CHARSETS:
                raise InvalidRequest(
                    415,
                    "unsupported_charset",
                    "The body must be encoded as UTF-8: send charset=utf-8 or no charset at all.",
                )


# ---------------------------------------------------------------------------------------------
# Body


class _Number:
    """What every JSON number parses to: never valid here, so never worth converting."""

    __slots__ = ()


# Handing numbers to a hook instead of int()/float() also closes two doors: "1e400" would become
# float("inf") (FerretDB drops the connection on non-finite numbers) and a 5,000-digit integer
# would raise the interpreter's int-conversion ValueError.
_NUMBER: Final = _Number()


def _number(text: str) -> _Number:
    return _NUMBER


def _refuse_constant(name: str) -> NoReturn:
    raise InvalidRequest(
        400,
        "non_finite_number",
        f"{name} is not a JSON number and is not accepted: the body must be strict JSON.",
    )


def _refuse_key(key: str, code: str, message: str) -> NoReturn:
    raise InvalidRequest(400, code, message, key if _echoable(key) else None)


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Build every JSON object, refusing duplicate and database-unsafe keys at any depth."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                quoted = f"The key {key!r}" if _echoable(key) else "A key"
                _refuse_key(
                    key,
                    "duplicate_key",
                    f"{quoted} appears more than once in the same object; send each key once.",
                )
            seen.add(key)
    if not document.keys() <= _FIELD_SET:
        for key in document:
            if key.startswith("$") or "." in key or "\x00" in key:
                quoted = f"The key {key!r}" if _echoable(key) else "A key"
                _refuse_key(
                    key,
                    "forbidden_key",
                    f"{quoted} is not allowed: keys may not start with '$' or contain '.' or NUL.",
                )
    return document


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_constant=_refuse_constant,
    parse_int=_number,
    parse_float=_number,
    strict=True,  # raw control characters inside strings are invalid JSON
)

# The same C scanner that _DECODER.decode() calls (json.scanner picks the C one when built).
_SCAN_ONCE: Final = make_scanner(_DECODER)  # type: ignore[arg-type]  # typeshed: "TODO: context"
_JSON_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")

# Opening brackets count +1 and closing ones -1 (array("b") reads the byte 0xff as -1).
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _too_deep(body: bytes) -> bool:
    """
    Whether brackets outside strings nest deeper than :data:`MAX_NESTING` anywhere in ``body``.

    Every step runs in C: ~0.5 ms for the worst 16 KiB body, against ~2 ms for a Python loop.
    Up to the first byte that is not valid JSON this tracks the parser exactly, and the parser
    goes no further, so a body the parser would walk too deep is always caught.
    """
    # Drop escaped backslashes, then escaped quotes (left to right, as JSON pairs them), so every
    # remaining quote opens or closes a string and the even-numbered pieces lie outside strings.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    if outside.count(b"[") + outside.count(b"{") <= MAX_NESTING:
        return False  # the usual reason to get here: brackets inside strings (a password)
    steps = array("b", outside.translate(_DEPTH_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps)) > MAX_NESTING


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "something else"


def _refuse_field(code: str, name: str, message: str) -> NoReturn:
    raise InvalidRequest(400, code, message, name)


# Each field has a fast path, one or two C-speed tests that pass every valid value, and a
# _diagnose_* function that runs only on failure and names the first rule broken, in a fixed order.


def _diagnose_string(value: object, name: str) -> str:
    if type(value) is not str:
        _refuse_field("invalid_type", name, f"{name} must be a string, not {_describe(value)}.")
    if not value:
        _refuse_field("empty_field", name, f"{name} must not be empty.")
    return value


def _diagnose_length(value: str, name: str, low: int, high: int) -> None:
    if len(value) < low:
        _refuse_field("too_short", name, f"{name} must be at least {low} characters long.")
    if len(value) > high:
        _refuse_field("too_long", name, f"{name} must be at most {high} characters long.")


def _diagnose_nul(value: str, name: str) -> None:
    if "\x00" in value:
        _refuse_field("invalid_characters", name, f"{name} must not contain NUL characters.")


def _unexplained(name: str) -> NoReturn:
    # Only reachable if a fast path and its diagnosis disagree: still a clean 400, never a 500.
    _refuse_field("invalid_value", name, f"{name} is not valid.")


# Control characters (C0, DEL, C1) and lone surrogates, which JSON's \ud800 escapes can produce
# and which no UTF-8 encoder, BSON's included, accepts. \s is Unicode whitespace, as isspace().
_NAME_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAME_OK: Final = re.compile(
    f"(?!\\s)[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{{{NAME_MIN_LENGTH},{NAME_MAX_LENGTH}}}(?<!\\s)"
)


def _name(value: object, name: str) -> str:
    if type(value) is str and _NAME_OK.fullmatch(value) is not None:
        return value
    _diagnose_name(value, name)


def _diagnose_name(value: object, name: str) -> NoReturn:
    text = _diagnose_string(value, name)
    _diagnose_length(text, name, NAME_MIN_LENGTH, NAME_MAX_LENGTH)
    if _NAME_FORBIDDEN.search(text) is not None:
        _refuse_field(
            "invalid_characters",
            name,
            f"{name} must not contain control characters (such as NUL, tab or newline).",
        )
    if text[0].isspace() or text[-1].isspace():
        _refuse_field(
            "surrounding_whitespace", name, f"{name} must not start or end with whitespace."
        )
    _unexplained(name)


# Explicit ASCII classes, never re.IGNORECASE: with it, [a-z] also matches the Kelvin sign.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL: Final = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD: Final = r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9](?:[A-Za-z0-9-]{0,57}[A-Za-z0-9])?)"
_DOMAIN: Final = rf"(?:{_LABEL}\.)+{_TLD}"
_EMAIL_OK: Final = re.compile(rf"({_LOCAL})@{_DOMAIN}")
_EMAIL_LOCAL: Final = re.compile(_LOCAL)
_EMAIL_DOMAIN: Final = re.compile(_DOMAIN)


def _email(value: object) -> str:
    # The length test comes first so the regex never sees more than 254 characters.
    if type(value) is str and len(value) <= EMAIL_MAX_LENGTH:
        match = _EMAIL_OK.fullmatch(value)
        if match is not None and match.end(1) <= EMAIL_MAX_LOCAL_LENGTH:
            # The TLD always holds a letter, so islower() means "no uppercase letter anywhere".
            if value.islower():
                return value
            local, _, domain = value.partition("@")
            return f"{local}@{domain.lower()}"
    _diagnose_email(value)


def _diagnose_email(value: object) -> NoReturn:
    name = "email"
    text = _diagnose_string(value, name)
    _diagnose_nul(text, name)
    if len(text) > EMAIL_MAX_LENGTH:
        _refuse_field(
            "too_long", name, f"email must be at most {EMAIL_MAX_LENGTH} characters long."
        )
    if not text.isascii():
        _refuse_field(
            "invalid_email",
            name,
            "email must be ASCII: addresses with non-ASCII characters are not supported "
            "(send an internationalised domain in its xn-- form).",
        )
    if text.count("@") != 1:
        _refuse_field("invalid_email", name, "email must contain exactly one '@'.")
    local, _, domain = text.partition("@")
    if len(local) > EMAIL_MAX_LOCAL_LENGTH:
        _refuse_field(
            "too_long",
            name,
            f"The part of email before '@' must be at most {EMAIL_MAX_LOCAL_LENGTH} characters.",
        )
    # Unreachable under the total limit; kept so the code states every RFC 5321 limit.
    if len(domain) > EMAIL_MAX_DOMAIN_LENGTH:
        _refuse_field(
            "too_long",
            name,
            f"The domain of email must be at most {EMAIL_MAX_DOMAIN_LENGTH} characters.",
        )
    if _EMAIL_LOCAL.fullmatch(local) is None:
        _refuse_field(
            "invalid_email",
            name,
            "The part of email before '@' must be letters, digits and !#$%&'*+/=?^_`{|}~- "
            "in dot-separated runs (no spaces, quotes or leading, trailing or double dots).",
        )
    if _EMAIL_DOMAIN.fullmatch(domain) is None:
        _refuse_field(
            "invalid_email",
            name,
            "The domain of email must be dot-separated labels of letters, digits and inner "
            "hyphens, ending in a top-level domain of at least two letters (like example.com).",
        )
    _unexplained(name)


_USERNAME_CHARACTERS: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_USERNAME_OK: Final = re.compile(
    rf"[A-Za-z0-9][A-Za-z0-9._-]{{{USERNAME_MIN_LENGTH - 1},{USERNAME_MAX_LENGTH - 1}}}"
)


def _username(value: object) -> str:
    if type(value) is str and _USERNAME_OK.fullmatch(value) is not None:
        return value
    _diagnose_username(value)


def _diagnose_username(value: object) -> NoReturn:
    name = "username"
    text = _diagnose_string(value, name)
    _diagnose_nul(text, name)
    _diagnose_length(text, name, USERNAME_MIN_LENGTH, USERNAME_MAX_LENGTH)
    if _USERNAME_CHARACTERS.fullmatch(text) is None:
        _refuse_field(
            "invalid_username",
            name,
            "username may only contain letters A-Z, digits, '.', '_' and '-', "
            "and must start with a letter or a digit.",
        )
    _unexplained(name)


def _password(value: object) -> str:
    if (
        type(value) is str
        and PASSWORD_MIN_LENGTH <= len(value) <= PASSWORD_MAX_LENGTH
        and "\x00" not in value
        and value.isascii()
    ):
        return value
    return _diagnose_password(value)


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _diagnose_password(value: object) -> str:
    """Refuse a password that failed the fast path, or accept a valid non-ASCII one."""
    name = "password"
    text = _diagnose_string(value, name)
    _diagnose_length(text, name, PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH)
    _diagnose_nul(text, name)
    # Searched for rather than caught from encode(): a UnicodeEncodeError would hold the password
    # and stay reachable from the refusal as its __context__.
    if _SURROGATE.search(text) is not None:
        _refuse_field(
            "invalid_characters",
            name,
            "password contains an unpaired surrogate escape (\\ud800-\\udfff), "
            "which is not a character.",
        )
    size = len(text.encode("utf-8"))
    # Unreachable while 128 characters encode to at most 512 bytes; guards a future limit.
    if size > PASSWORD_MAX_BYTES:
        _refuse_field(
            "too_long", name, f"password must be at most {PASSWORD_MAX_BYTES} bytes of UTF-8."
        )
    return text


def _refuse_keys(document: dict[str, object]) -> NoReturn:
    for key in document:
        if key not in _FIELD_SET:
            quoted = f"Unknown field {key!r}" if _echoable(key) else "The body has an unknown field"
            _refuse_key(key, "unknown_field", f"{quoted}: a sign-up accepts only {_FIELD_LIST}.")
    for name in FIELDS:
        if name not in document:
            _refuse_field("missing_field", name, f"{name} is required.")
    # Unreachable (a wrong key set has an unknown or a missing key); still a clean 400.
    raise InvalidRequest(400, "invalid_fields", f"A sign-up has exactly the fields {_FIELD_LIST}.")


def parse_signup(body: bytes) -> SignUp:
    """
    Validate a ``POST /users`` body and return the sign-up it holds, normalised.

    :raises InvalidRequest: with the status (400 or 413), the machine code and, when one field
        is at fault, its name. Nothing else is ever raised.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(
            413,
            "body_too_large",
            f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes.",
        )
    # Refusals are raised after the except blocks, never inside them: the caught error holds the
    # body (with the password), and would stay reachable from the refusal as its __context__.
    text: str | None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise InvalidRequest(400, "invalid_utf8", "The request body is not valid UTF-8.")
    # Counting brackets is C-speed and, when it is small, already bounds the depth; only hostile
    # or odd bodies pay for the exact scan.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING and _too_deep(body):
        raise InvalidRequest(
            400,
            "nesting_too_deep",
            f"The JSON in the body is nested more than {MAX_NESTING} levels deep; "
            "a sign-up is one flat object.",
        )
    document: object = None
    failure: str | None = None
    try:
        # The C scanner straight away saves JSONDecoder.decode's bookkeeping (~10% of a valid
        # parse); anything unusual goes through decode(), which words the errors.
        try:
            document, end = _SCAN_ONCE(text, 0)
        except StopIteration:  # leading whitespace, or no value at all
            end = -1
        if end < 0 or (end != len(text) and _JSON_WHITESPACE.fullmatch(text, end) is None):
            document = _DECODER.decode(text)
    except json.JSONDecodeError as error:
        # json's own wording is fixed text plus positions; it never quotes the document.
        failure = f" ({error.msg}, line {error.lineno} column {error.colno})"
        if not text.strip():
            failure = ": it is empty"
    except (ValueError, RecursionError):
        # Belt and braces: the number hooks and the depth scan should make both unreachable.
        failure = ""
    if failure is not None:
        raise InvalidRequest(400, "invalid_json", f"The request body is not valid JSON{failure}.")
    if type(document) is not dict:
        raise InvalidRequest(
            400,
            "not_an_object",
            f"The request body must be a JSON object with the fields {_FIELD_LIST}.",
        )
    if document.keys() != _FIELD_SET:
        _refuse_keys(document)
    return SignUp(
        first_name=_name(document["firstName"], "firstName"),
        last_name=_name(document["lastName"], "lastName"),
        email=_email(document["email"]),
        username=_username(document["username"]),
        password=_password(document["password"]),
    )
