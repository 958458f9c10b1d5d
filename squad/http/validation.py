"""
Strict validation of a ``POST /users`` body, at the edge, before anything is stored.

:func:`check_content_type` vets the ``Content-Type`` header and :func:`parse_signup` turns the raw
body into a :class:`~squad.signup.SignUp` or raises :class:`InvalidRequest`, which carries the
kind of error (:class:`squad.http.errors.ErrorKind`: its machine code and status), a sentence for
a person and, when one field is at fault, its name. Nothing here does I/O; both functions are
safe to call with any input whatsoever: the only exception they raise is :class:`InvalidRequest`.
The limits and patterns are the rules of :mod:`squad.http.fields`.

The rules, in the order they are checked (the first failure is reported), with the kind of
each refusal:

- ``UNSUPPORTED_MEDIA_TYPE``: no ``Content-Type``, a type other than ``application/json``, or
  a parameter without a value;
- ``UNSUPPORTED_CHARSET``: a ``charset`` parameter other than UTF-8;
- ``BODY_TOO_LARGE``: a body over :data:`~squad.http.fields.MAX_BODY_BYTES`;
- ``INVALID_UTF8``: a body that is not UTF-8;
- ``NESTING_TOO_DEEP``: arrays or objects nested deeper than
  :data:`~squad.http.fields.MAX_NESTING`;
- ``INVALID_JSON``: not JSON, an empty body included;
- ``NON_FINITE_NUMBER`` (*): ``NaN``, ``Infinity`` or ``-Infinity``;
- ``DUPLICATE_KEY`` (*): a key twice in one object;
- ``FORBIDDEN_KEY`` (*): a key starting with ``$`` or containing ``.`` or NUL;
- ``NOT_AN_OBJECT``: a JSON value other than an object;
- ``UNKNOWN_FIELD``: a key other than the five fields;
- ``MISSING_FIELD``: one of the five fields absent;
- then, field by field: ``INVALID_TYPE`` (not a string), ``EMPTY_FIELD``, ``TOO_SHORT``,
  ``TOO_LONG``, ``INVALID_CHARACTERS`` (NUL, control characters, bidirectional controls in
  names, lone surrogates),
  ``SURROUNDING_WHITESPACE`` (names), ``INVALID_EMAIL``, ``INVALID_USERNAME``.

(*) Found while parsing, at any depth, so whichever comes first in the body is reported; large
numbers such as ``1e400`` are never converted, so they are simply "not a string". Two further
kinds exist only as a safety net and cannot be reached today: ``INVALID_VALUE`` and
``INVALID_FIELDS``.

Fields are checked in the order of :data:`~squad.http.fields.SIGNUP_FIELDS`; unknown fields
are reported before missing ones, because a misspelt key (``first_name``) is the likelier
mistake.

The decisions behind the rules:

- Lengths count Unicode code points (what ``len()`` gives), not bytes or grapheme clusters.
- ``firstName``, ``lastName``: any characters except control characters (C0, DEL, C1), the
  bidirectional controls U+202A-U+202E and U+2066-U+2069 (invisible, they make a name display
  other than it reads) and lone surrogates. Leading or trailing whitespace is *refused*, not
  trimmed: silently changing what a person typed hides client bugs, and a refusal names the
  problem. Inner spaces are fine (``Mary Ann``). No Unicode normalisation is applied; HTML or
  other markup is stored as text (escaping it is the job of whoever renders it).
- ``email``: ASCII only (internationalised domains must arrive in their ``xn--`` form; UTF-8
  local parts, RFC 6531, are refused), exactly one ``@``, the local part a dot-atom of RFC 5322
  ``atext`` (no quoted strings, no comments), the domain dot-separated labels of letters, digits
  and inner hyphens, at least two labels, the last one (the TLD) two or more letters or an
  ``xn--`` label; no IP literals; RFC 5321's length limits. The domain is lowercased (it is
  case-insensitive); the local part is kept as sent (RFC 5321 says it may be case-sensitive).
- ``username``: ``A-Z a-z 0-9 . _ -``, starting with a letter or digit; kept as sent (case is
  preserved).
- ``password``: anything except NUL and lone surrogates (which cannot be encoded), limited in
  bytes of UTF-8 as well as in characters. Whitespace is kept: it is part of the secret.

Error messages name the field and the rule; they never contain the password, a field's value or
the raw body. A key is echoed (in ``field`` and in the message) only when it is short printable
ASCII, so a hostile key cannot smuggle control characters or kilobytes into logs and answers
(keys are names, not values: a client that sent its password *as a key* would see it quoted).
Refusals are never raised inside an ``except`` block, so no chained exception (``__context__``)
keeps the body or the password alive, or prints it in a traceback.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from json.scanner import make_scanner
from typing import Final, NoReturn

from squad.http.errors import ErrorKind
from squad.http.fields import (
    BIDI_CONTROLS,
    EMAIL,
    EMAIL_DOMAIN,
    EMAIL_LOCAL_PART,
    EMAIL_MAX_DOMAIN_LENGTH,
    EMAIL_MAX_LOCAL_LENGTH,
    FIELD_LIST,
    FIELDS,
    FIRST_NAME,
    LAST_NAME,
    MAX_BODY_BYTES,
    MAX_NESTING,
    NAME_FORBIDDEN,
    PASSWORD,
    PASSWORD_MAX_BYTES,
    USERNAME,
    USERNAME_FIRST,
    USERNAME_REST,
    WHITESPACE,
    FieldRule,
)
from squad.signup import SignUp

__all__ = [
    "FIELDS",
    "MAX_BODY_BYTES",
    "MAX_NESTING",
    "InvalidRequest",
    "check_content_type",
    "parse_signup",
]

_FIELD_SET: Final = frozenset(FIELDS)


class InvalidRequest(Exception):
    """
    A request refused at the edge.

    ``str(exc)`` is the message, which is safe to log: it never holds a value from the body.
    """

    kind: ErrorKind
    message: str
    field: str | None

    def __init__(
        self, kind: ErrorKind, message: str | None = None, field: str | None = None
    ) -> None:
        self.kind = kind
        self.message = kind.message if message is None else message
        self.field = field
        super().__init__(self.message)

    @property
    def status(self) -> int:
        """The HTTP status of the refusal."""
        return self.kind.status

    @property
    def code(self) -> str:
        """The machine code of the refusal."""
        return self.kind.code


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
    kind = ErrorKind.UNSUPPORTED_MEDIA_TYPE
    raise InvalidRequest(kind, f"{detail} {kind.message}")


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
                raise InvalidRequest(ErrorKind.UNSUPPORTED_CHARSET)


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
        ErrorKind.NON_FINITE_NUMBER,
        f"{name} is not a JSON number and is not accepted: the body must be strict JSON.",
    )


def _refuse_key(key: str, kind: ErrorKind, message: str) -> NoReturn:
    raise InvalidRequest(kind, message, key if _echoable(key) else None)


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
                    ErrorKind.DUPLICATE_KEY,
                    f"{quoted} appears more than once in the same object; send each key once.",
                )
            seen.add(key)
    if not document.keys() <= _FIELD_SET:
        for key in document:
            if key.startswith("$") or "." in key or "\x00" in key:
                quoted = f"The key {key!r}" if _echoable(key) else "A key"
                _refuse_key(
                    key,
                    ErrorKind.FORBIDDEN_KEY,
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

    Every step runs in C, so the worst body costs little more than reading it. Up to the first
    byte that is not valid JSON this tracks the parser exactly, and the parser goes no further,
    so a body the parser would walk too deep is always caught.
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


def _refuse_field(kind: ErrorKind, name: str, message: str | None = None) -> NoReturn:
    raise InvalidRequest(kind, message, name)


# Each field has a fast path, one or two C-speed tests that pass every valid value, and a
# _diagnose_* function that runs only on failure and names the first rule broken, in a fixed order.


def _diagnose_string(value: object, name: str) -> str:
    if type(value) is not str:
        _refuse_field(
            ErrorKind.INVALID_TYPE, name, f"{name} must be a string, not {_describe(value)}."
        )
    if not value:
        _refuse_field(ErrorKind.EMPTY_FIELD, name, f"{name} must not be empty.")
    return value


def _diagnose_length(value: str, rule: FieldRule) -> None:
    name, low, high = rule.name, rule.min_length, rule.max_length
    if len(value) < low:
        _refuse_field(ErrorKind.TOO_SHORT, name, f"{name} must be at least {low} characters long.")
    if len(value) > high:
        _refuse_field(ErrorKind.TOO_LONG, name, f"{name} must be at most {high} characters long.")


def _diagnose_nul(value: str, name: str) -> None:
    if "\x00" in value:
        _refuse_field(
            ErrorKind.INVALID_CHARACTERS, name, f"{name} must not contain NUL characters."
        )


def _unexplained(name: str) -> NoReturn:
    # Only reachable if a fast path and its diagnosis disagree: still a clean 400, never a 500.
    _refuse_field(ErrorKind.INVALID_VALUE, name, f"{name} is not valid.")


# Lone surrogates are refused with the control characters: JSON's \ud800 escapes can produce
# them, and no UTF-8 encoder, BSON's included, accepts them.
_NAME_FORBIDDEN: Final = re.compile(rf"[{NAME_FORBIDDEN}\ud800-\udfff]")
_BIDI_CONTROL: Final = re.compile(f"[{BIDI_CONTROLS}]")
# One pattern serves both names, since lastName's rule is firstName's under another name.
_NAME_OK: Final = re.compile(
    rf"(?![{WHITESPACE}])[^{NAME_FORBIDDEN}\ud800-\udfff]"
    rf"{{{FIRST_NAME.min_length},{FIRST_NAME.max_length}}}(?<![{WHITESPACE}])"
)


def _name(value: object, rule: FieldRule) -> str:
    if type(value) is str and _NAME_OK.fullmatch(value) is not None:
        return value
    _diagnose_name(value, rule)


def _diagnose_name(value: object, rule: FieldRule) -> NoReturn:
    name = rule.name
    text = _diagnose_string(value, name)
    _diagnose_length(text, rule)
    forbidden = _NAME_FORBIDDEN.search(text)
    if forbidden is not None and _BIDI_CONTROL.fullmatch(forbidden.group()) is not None:
        _refuse_field(
            ErrorKind.INVALID_CHARACTERS,
            name,
            f"{name} must not contain bidirectional controls (U+202A to U+202E, U+2066 to "
            "U+2069), which make text display other than it reads.",
        )
    if forbidden is not None:
        _refuse_field(
            ErrorKind.INVALID_CHARACTERS,
            name,
            f"{name} must not contain control characters (such as NUL, tab or newline).",
        )
    if text[0].isspace() or text[-1].isspace():
        _refuse_field(
            ErrorKind.SURROUNDING_WHITESPACE, name, f"{name} must not start or end with whitespace."
        )
    _unexplained(name)


# Never re.IGNORECASE on these patterns: with it, [a-z] also matches the Kelvin sign.
_EMAIL_OK: Final = re.compile(rf"({EMAIL_LOCAL_PART})@{EMAIL_DOMAIN}")
_EMAIL_LOCAL: Final = re.compile(EMAIL_LOCAL_PART)
_EMAIL_DOMAIN: Final = re.compile(EMAIL_DOMAIN)


def _email(value: object) -> str:
    # The length test comes first so the regex never sees an address over the limit.
    if type(value) is str and len(value) <= EMAIL.max_length:
        match = _EMAIL_OK.fullmatch(value)
        if match is not None and match.end(1) <= EMAIL_MAX_LOCAL_LENGTH:
            # The TLD always holds a letter, so islower() means "no uppercase letter anywhere".
            if value.islower():
                return value
            local, _, domain = value.partition("@")
            return f"{local}@{domain.lower()}"
    _diagnose_email(value)


def _diagnose_email(value: object) -> NoReturn:
    name = EMAIL.name
    text = _diagnose_string(value, name)
    _diagnose_nul(text, name)
    if len(text) > EMAIL.max_length:
        _refuse_field(
            ErrorKind.TOO_LONG, name, f"email must be at most {EMAIL.max_length} characters long."
        )
    if not text.isascii():
        _refuse_field(
            ErrorKind.INVALID_EMAIL,
            name,
            "email must be ASCII: addresses with non-ASCII characters are not supported "
            "(send an internationalised domain in its xn-- form).",
        )
    if text.count("@") != 1:
        _refuse_field(ErrorKind.INVALID_EMAIL, name, "email must contain exactly one '@'.")
    local, _, domain = text.partition("@")
    if len(local) > EMAIL_MAX_LOCAL_LENGTH:
        _refuse_field(
            ErrorKind.TOO_LONG,
            name,
            f"The part of email before '@' must be at most {EMAIL_MAX_LOCAL_LENGTH} characters.",
        )
    # Unreachable under the total limit; kept so the code states every RFC 5321 limit.
    if len(domain) > EMAIL_MAX_DOMAIN_LENGTH:
        _refuse_field(
            ErrorKind.TOO_LONG,
            name,
            f"The domain of email must be at most {EMAIL_MAX_DOMAIN_LENGTH} characters.",
        )
    if _EMAIL_LOCAL.fullmatch(local) is None:
        _refuse_field(
            ErrorKind.INVALID_EMAIL,
            name,
            "The part of email before '@' must be letters, digits and !#$%&'*+/=?^_`{|}~- "
            "in dot-separated runs (no spaces, quotes or leading, trailing or double dots).",
        )
    if _EMAIL_DOMAIN.fullmatch(domain) is None:
        _refuse_field(
            ErrorKind.INVALID_EMAIL,
            name,
            "The domain of email must be dot-separated labels of letters, digits and inner "
            "hyphens, ending in a top-level domain of at least two letters (like example.com).",
        )
    _unexplained(name)


_USERNAME_CHARACTERS: Final = re.compile(rf"{USERNAME_FIRST}{USERNAME_REST}*")
# The first character is also one of the rest, so the lookahead lets one count bound them all.
_USERNAME_OK: Final = re.compile(
    rf"(?={USERNAME_FIRST}){USERNAME_REST}{{{USERNAME.min_length},{USERNAME.max_length}}}"
)


def _username(value: object) -> str:
    if type(value) is str and _USERNAME_OK.fullmatch(value) is not None:
        return value
    _diagnose_username(value)


def _diagnose_username(value: object) -> NoReturn:
    name = USERNAME.name
    text = _diagnose_string(value, name)
    _diagnose_nul(text, name)
    _diagnose_length(text, USERNAME)
    if _USERNAME_CHARACTERS.fullmatch(text) is None:
        _refuse_field(ErrorKind.INVALID_USERNAME, name)
    _unexplained(name)


def _password(value: object) -> str:
    if (
        type(value) is str
        and PASSWORD.min_length <= len(value) <= PASSWORD.max_length
        and "\x00" not in value
        and value.isascii()
    ):
        return value
    return _diagnose_password(value)


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _diagnose_password(value: object) -> str:
    """Refuse a password that failed the fast path, or accept a valid non-ASCII one."""
    name = PASSWORD.name
    text = _diagnose_string(value, name)
    _diagnose_length(text, PASSWORD)
    _diagnose_nul(text, name)
    # Searched for rather than caught from encode(): a UnicodeEncodeError would hold the password
    # and stay reachable from the refusal as its __context__.
    if _SURROGATE.search(text) is not None:
        _refuse_field(
            ErrorKind.INVALID_CHARACTERS,
            name,
            "password contains an unpaired surrogate escape (\\ud800-\\udfff), "
            "which is not a character.",
        )
    size = len(text.encode("utf-8"))
    # Unreachable while the longest password encodes to fewer bytes; guards a future limit.
    if size > PASSWORD_MAX_BYTES:
        _refuse_field(
            ErrorKind.TOO_LONG,
            name,
            f"password must be at most {PASSWORD_MAX_BYTES} bytes of UTF-8.",
        )
    return text


def _refuse_keys(document: dict[str, object]) -> NoReturn:
    for key in document:
        if key not in _FIELD_SET:
            quoted = f"Unknown field {key!r}" if _echoable(key) else "The body has an unknown field"
            _refuse_key(
                key, ErrorKind.UNKNOWN_FIELD, f"{quoted}: a sign-up accepts only {FIELD_LIST}."
            )
    for name in FIELDS:
        if name not in document:
            _refuse_field(ErrorKind.MISSING_FIELD, name, f"{name} is required.")
    # Unreachable (a wrong key set has an unknown or a missing key); still a clean 400.
    raise InvalidRequest(ErrorKind.INVALID_FIELDS)


def parse_signup(body: bytes) -> SignUp:
    """
    Validate a ``POST /users`` body and return the sign-up it holds, normalised.

    :raises InvalidRequest: with the kind of error and, when one field is at fault, its name.
        Nothing else is ever raised.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(
            ErrorKind.BODY_TOO_LARGE,
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
        raise InvalidRequest(ErrorKind.INVALID_UTF8)
    # Counting brackets is C-speed and, when it is small, already bounds the depth; only hostile
    # or odd bodies pay for the exact scan.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING and _too_deep(body):
        raise InvalidRequest(ErrorKind.NESTING_TOO_DEEP)
    document: object = None
    failure: str | None = None
    try:
        # Calling the C scanner directly skips JSONDecoder.decode's bookkeeping in the common
        # case, and anything unusual goes through decode(), which words the errors.
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
        raise InvalidRequest(
            ErrorKind.INVALID_JSON, f"The request body is not valid JSON{failure}."
        )
    if type(document) is not dict:
        raise InvalidRequest(ErrorKind.NOT_AN_OBJECT)
    if document.keys() != _FIELD_SET:
        _refuse_keys(document)
    return SignUp(
        first_name=_name(document[FIRST_NAME.name], FIRST_NAME),
        last_name=_name(document[LAST_NAME.name], LAST_NAME),
        email=_email(document[EMAIL.name]),
        username=_username(document[USERNAME.name]),
        password=_password(document[PASSWORD.name]),
    )
