"""
Hostile ``POST /users`` requests and the answer each must get, kept as plain data.

Each case is the request (``content_type`` is the header's value, ``None`` for no header, and
``body`` the exact bytes) and the expected answer (``status``, the ``error`` code and the
``field`` named, or ``None``). ``tests.unit.test_validation`` checks them against
:func:`squad.http.validation.check_content_type` then :func:`squad.http.validation.parse_signup`;
the same
list can be replayed through the real HTTP app and database, where every case must also leave
nothing stored. No request is valid: the 415 cases carry a valid body on purpose (the header
alone must refuse them); every other body is invalid whatever its header.

The cases never import squad: they state the contract, not the implementation.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from tests.signups import VALID_SIGNUP

__all__ = ["CASES", "JSON", "HostileCase", "body"]


class HostileCase(NamedTuple):
    name: str
    content_type: bytes | None
    body: bytes
    status: int
    code: str
    field: str | None


JSON = b"application/json"
_MISSING = object()


def body(**changes: object) -> bytes:
    """The valid sign-up with ``changes`` applied (``_MISSING`` removes a field), as JSON."""
    document = dict(VALID_SIGNUP)
    for key, value in changes.items():
        if value is _MISSING:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode("utf-8")


def _raw(text: str) -> bytes:
    """A body spelled out by hand, for what json.dumps cannot produce."""
    return text.encode("utf-8")


# The valid body's fields as raw JSON text, to splice hostile members before them.
_REST = _raw(json.dumps(VALID_SIGNUP)[1:-1])
_VALID = body()


def _case(
    name: str,
    payload: bytes,
    status: int,
    code: str,
    field: str | None = None,
    content_type: bytes | None = JSON,
) -> HostileCase:
    return HostileCase(name, content_type, payload, status, code, field)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b'"x"' + b"]" * depth


CASES: list[HostileCase] = [
    # ---- content type: 415 ----
    _case("content type missing", _VALID, 415, "unsupported_media_type", content_type=None),
    _case("content type empty", _VALID, 415, "unsupported_media_type", content_type=b""),
    _case("text/plain", _VALID, 415, "unsupported_media_type", content_type=b"text/plain"),
    _case(
        "form encoded",
        b"firstName=Ada&lastName=Lovelace&email=ada%40example.com&username=ada&password=x",
        415,
        "unsupported_media_type",
        content_type=b"application/x-www-form-urlencoded",
    ),
    _case(
        "multipart",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"multipart/form-data; boundary=xyz",
    ),
    _case("text/json", _VALID, 415, "unsupported_media_type", content_type=b"text/json"),
    _case(
        "json suffix type",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"application/merge-patch+json",
    ),
    _case("jsonp", _VALID, 415, "unsupported_media_type", content_type=b"application/jsonp"),
    _case(
        "list of types",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"application/json, text/plain",
    ),
    _case("wildcard type", _VALID, 415, "unsupported_media_type", content_type=b"*/*"),
    _case("xml", _VALID, 415, "unsupported_media_type", content_type=b"application/xml"),
    _case(
        "NUL after type",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"application/json\x00",
    ),
    _case(
        "huge content type",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"application/" + b"x" * 8000,
    ),
    _case(
        "parameter without value",
        _VALID,
        415,
        "unsupported_media_type",
        content_type=b"application/json; charset",
    ),
    _case(
        "latin-1 charset",
        _VALID,
        415,
        "unsupported_charset",
        content_type=b"application/json; charset=iso-8859-1",
    ),
    _case(
        "utf-16 charset",
        _VALID,
        415,
        "unsupported_charset",
        content_type=b"application/json; charset=utf-16",
    ),
    # ---- size: 413 ----
    _case(
        "one byte over 16 KiB", _VALID + b" " * (16 * 1024 + 1 - len(_VALID)), 413, "body_too_large"
    ),
    _case("one mebibyte", b'{"firstName": "' + b"A" * (1024 * 1024) + b'"}', 413, "body_too_large"),
    _case("16 KiB of open brackets plus one", b"[" * (16 * 1024 + 1), 413, "body_too_large"),
    # ---- encoding: 400 invalid_utf8 ----
    _case("byte 0xff", body(firstName="Ada").replace(b"Ada", b"A\xffa"), 400, "invalid_utf8"),
    _case("overlong slash", body(lastName="x").replace(b'"x"', b'"\xc0\xaf"'), 400, "invalid_utf8"),
    _case(
        "UTF-8 encoded surrogate",
        body(lastName="x").replace(b'"x"', b'"\xed\xa0\x80"'),
        400,
        "invalid_utf8",
    ),
    _case(
        "truncated sequence", body(lastName="x").replace(b'"x"', b'"\xe2\x82"'), 400, "invalid_utf8"
    ),
    _case("latin-1 name", body(lastName="x").replace(b'"x"', b'"Ren\xe9"'), 400, "invalid_utf8"),
    _case("UTF-16 body", json.dumps(VALID_SIGNUP).encode("utf-16"), 400, "invalid_utf8"),
    # ---- syntax: 400 invalid_json ----
    _case("empty body", b"", 400, "invalid_json"),
    _case("whitespace only", b" \r\n\t ", 400, "invalid_json"),
    _case("truncated object", _VALID[:-10], 400, "invalid_json"),
    _case("trailing comma", _VALID[:-1] + b",}", 400, "invalid_json"),
    _case("single quotes", _VALID.replace(b'"', b"'"), 400, "invalid_json"),
    _case("unquoted key", _VALID.replace(b'"firstName"', b"firstName"), 400, "invalid_json"),
    _case("comment", b"/* hi */" + _VALID, 400, "invalid_json"),
    _case("trailing data", _VALID + b" {}", 400, "invalid_json"),
    _case("two objects", _VALID + _VALID, 400, "invalid_json"),
    _case("byte order mark", b"\xef\xbb\xbf" + _VALID, 400, "invalid_json"),
    _case(
        "raw newline in a string",
        body(lastName="x").replace(b'"x"', b'"a\nb"'),
        400,
        "invalid_json",
    ),
    _case(
        "raw NUL in a string", body(lastName="x").replace(b'"x"', b'"a\x00b"'), 400, "invalid_json"
    ),
    _case("bad escape", body(lastName="x").replace(b'"x"', b'"\\x41"'), 400, "invalid_json"),
    _case("Python None", body(lastName="x").replace(b'"x"', b"None"), 400, "invalid_json"),
    _case("hex number", body(lastName="x").replace(b'"x"', b"0x10"), 400, "invalid_json"),
    _case("leading zero", body(lastName="x").replace(b'"x"', b"01"), 400, "invalid_json"),
    _case("unterminated string", b'{"firstName": "Ada', 400, "invalid_json"),
    # ---- non-finite numbers: 400 non_finite_number ----
    _case("NaN", body(lastName="x").replace(b'"x"', b"NaN"), 400, "non_finite_number"),
    _case("Infinity", body(password="x").replace(b'"x"', b"Infinity"), 400, "non_finite_number"),
    _case(
        "-Infinity hidden in an array",
        b'{"extra": [1, -Infinity], ' + _REST + b"}",
        400,
        "non_finite_number",
    ),
    # ---- nesting: 400 nesting_too_deep ----
    _case("16,000 open brackets", b"[" * 16000, 400, "nesting_too_deep"),
    _case("3,000 nested objects", b'{"a":' * 3000, 400, "nesting_too_deep"),
    _case(
        "deep array as password",
        body(password="x").replace(b'"x"', _nested(4000)),
        400,
        "nesting_too_deep",
    ),
    _case("mixed nesting", b'[{"a":' * 1500 + b"1" + b"}]" * 1500, 400, "nesting_too_deep"),
    _case(
        "one level over the limit",
        body(firstName="x").replace(b'"x"', _nested(16)),
        400,
        "nesting_too_deep",
    ),
    # ---- numbers that must not crash the parser, refused as the wrong type ----
    _case(
        "float overflowing to infinity",
        body(username="x").replace(b'"x"', b"1e400"),
        400,
        "invalid_type",
        "username",
    ),
    _case(
        "5,000-digit integer",
        body(username="x").replace(b'"x"', b"7" * 5000),
        400,
        "invalid_type",
        "username",
    ),
    _case(
        "at the nesting limit",
        body(firstName="x").replace(b'"x"', _nested(15)),
        400,
        "invalid_type",
        "firstName",
    ),
    # ---- not an object: 400 not_an_object ----
    _case("array of the sign-up", b"[" + _VALID + b"]", 400, "not_an_object"),
    _case("string", b'"Ada"', 400, "not_an_object"),
    _case("number", b"42", 400, "not_an_object"),
    _case("null", b"null", 400, "not_an_object"),
    _case("true", b"true", 400, "not_an_object"),
    _case("empty array", b"[]", 400, "not_an_object"),
    # ---- duplicate keys: 400 duplicate_key ----
    _case(
        "password twice",
        _VALID[:-1] + b', "password": "other password"}',
        400,
        "duplicate_key",
        "password",
    ),
    _case(
        "firstName twice",
        b'{"firstName": "Eve", ' + _REST + b"}",
        400,
        "duplicate_key",
        "firstName",
    ),
    _case(
        "duplicate inside a nested object",
        b'{"extra": {"a": 1, "a": 2}, ' + _REST + b"}",
        400,
        "duplicate_key",
        "a",
    ),
    _case(
        "duplicate through an escape",
        _VALID[:-1] + b', "pass\\u0077ord": "other password"}',
        400,
        "duplicate_key",
        "password",
    ),
    # ---- keys the database must never see: 400 forbidden_key ----
    _case("$where", b'{"$where": "sleep(1000)", ' + _REST + b"}", 400, "forbidden_key", "$where"),
    _case("operator as password", body(password={"$ne": None}), 400, "forbidden_key", "$ne"),
    _case("operator as email", body(email={"$gt": ""}), 400, "forbidden_key", "$gt"),
    _case("operator as username", body(username={"$regex": ".*"}), 400, "forbidden_key", "$regex"),
    _case(
        "dotted key",
        b'{"profile.isAdmin": true, ' + _REST + b"}",
        400,
        "forbidden_key",
        "profile.isAdmin",
    ),
    _case("dot only", b'{".": 1, ' + _REST + b"}", 400, "forbidden_key", "."),
    _case("dollar only", b'{"$": 1, ' + _REST + b"}", 400, "forbidden_key", "$"),
    _case(
        "escaped dollar",
        b'{"\\u0024set": {"processed": true}, ' + _REST + b"}",
        400,
        "forbidden_key",
        "$set",
    ),
    _case(
        "NUL in a key", b'{"first\\u0000Name": "Ada", ' + _REST + b"}", 400, "forbidden_key", None
    ),
    _case(
        "forbidden key deep inside",
        b'{"extra": [[{"$x": 1}]], ' + _REST + b"}",
        400,
        "forbidden_key",
        "$x",
    ),
    # ---- unknown fields: 400 unknown_field ----
    _case("isAdmin", body(isAdmin=True), 400, "unknown_field", "isAdmin"),
    _case("processed", body(processed=True), 400, "unknown_field", "processed"),
    _case("_id", body(_id="000000000000000000000000"), 400, "unknown_field", "_id"),
    _case(
        "date_created",
        body(date_created="1970-01-01T00:00:00Z"),
        400,
        "unknown_field",
        "date_created",
    ),
    _case(
        "passwordHash",
        body(passwordHash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
        400,
        "unknown_field",
        "passwordHash",
    ),
    _case(
        "snake case", body(firstName=_MISSING, first_name="Ada"), 400, "unknown_field", "first_name"
    ),
    _case("__proto__", body(__proto__={"isAdmin": True}), 400, "unknown_field", "__proto__"),
    _case("empty key", b'{"": "x", ' + _REST + b"}", 400, "unknown_field", None),
    _case("homoglyph key", body(**{"firstN\u0430me": "Ada"}), 400, "unknown_field", None),
    _case("key of 1,000 characters", body(**{"k" * 1000: 1}), 400, "unknown_field", None),
    # ---- missing fields: 400 missing_field ----
    _case("empty object", b"{}", 400, "missing_field", "firstName"),
    _case("no firstName", body(firstName=_MISSING), 400, "missing_field", "firstName"),
    _case("no lastName", body(lastName=_MISSING), 400, "missing_field", "lastName"),
    _case("no email", body(email=_MISSING), 400, "missing_field", "email"),
    _case("no username", body(username=_MISSING), 400, "missing_field", "username"),
    _case("no password", body(password=_MISSING), 400, "missing_field", "password"),
    # ---- wrong types: 400 invalid_type ----
    _case("number as firstName", body(firstName=42), 400, "invalid_type", "firstName"),
    _case("null as lastName", body(lastName=None), 400, "invalid_type", "lastName"),
    _case("array as email", body(email=["ada@example.com"]), 400, "invalid_type", "email"),
    _case("boolean as username", body(username=True), 400, "invalid_type", "username"),
    _case("object as password", body(password={"plain": "text"}), 400, "invalid_type", "password"),
    _case("number as password", body(password=12345678), 400, "invalid_type", "password"),
    # ---- empty values: 400 empty_field ----
    _case("empty firstName", body(firstName=""), 400, "empty_field", "firstName"),
    _case("empty email", body(email=""), 400, "empty_field", "email"),
    _case("empty password", body(password=""), 400, "empty_field", "password"),
    # ---- lengths: 400 too_short / too_long ----
    _case("firstName of 101", body(firstName="A" * 101), 400, "too_long", "firstName"),
    _case("lastName of 10,000", body(lastName="L" * 10000), 400, "too_long", "lastName"),
    _case("username of 2", body(username="ab"), 400, "too_short", "username"),
    _case("username of 33", body(username="a" * 33), 400, "too_long", "username"),
    _case("password of 7", body(password="1234567"), 400, "too_short", "password"),
    _case("password of 129", body(password="p" * 129), 400, "too_long", "password"),
    _case(
        "email of 256",
        body(email="a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 59 + ".com"),
        400,
        "too_long",
        "email",
    ),
    _case("local part of 65", body(email="a" * 65 + "@example.com"), 400, "too_long", "email"),
    # ---- characters: 400 invalid_characters / surrounding_whitespace ----
    _case("NUL in firstName", body(firstName="Ada\x00"), 400, "invalid_characters", "firstName"),
    _case("NUL in email", body(email="ada\x00@example.com"), 400, "invalid_characters", "email"),
    _case(
        "NUL in username", body(username="ada\x00lovelace"), 400, "invalid_characters", "username"
    ),
    _case(
        "NUL in password", body(password="correct\x00horse"), 400, "invalid_characters", "password"
    ),
    _case(
        "newline in lastName", body(lastName="Love\nlace"), 400, "invalid_characters", "lastName"
    ),
    _case(
        "C1 control in lastName",
        body(lastName="Love\x85lace"),
        400,
        "invalid_characters",
        "lastName",
    ),
    _case(
        "lone surrogate in firstName",
        body(firstName="\ud800Ada"),
        400,
        "invalid_characters",
        "firstName",
    ),
    _case(
        "lone surrogate in password",
        body(password="correct \udfff horse"),
        400,
        "invalid_characters",
        "password",
    ),
    # Bidirectional controls display a name other than it reads ("Ada" + RLO + "ecalevoL").
    _case(
        "right-to-left override in firstName",
        body(firstName="Ada\u202eecalevoL"),
        400,
        "invalid_characters",
        "firstName",
    ),
    _case(
        "left-to-right embedding in lastName",
        body(lastName="\u202aLovelace"),
        400,
        "invalid_characters",
        "lastName",
    ),
    _case(
        "pop directional formatting ending lastName",
        body(lastName="Lovelace\u202c"),
        400,
        "invalid_characters",
        "lastName",
    ),
    _case(
        "first strong isolate in firstName",
        body(firstName="A\u2068da\u2069"),
        400,
        "invalid_characters",
        "firstName",
    ),
    _case(
        "right-to-left override in username",
        body(username="ada\u202elovelace"),
        400,
        "invalid_username",
        "username",
    ),
    _case(
        "right-to-left isolate in email",
        body(email="ada\u2067@example.com"),
        400,
        "invalid_email",
        "email",
    ),
    _case(
        "leading space in firstName",
        body(firstName=" Ada"),
        400,
        "surrounding_whitespace",
        "firstName",
    ),
    _case(
        "trailing no-break space",
        body(lastName="Lovelace\u00a0"),
        400,
        "surrounding_whitespace",
        "lastName",
    ),
    _case(
        "whitespace-only lastName", body(lastName="   "), 400, "surrounding_whitespace", "lastName"
    ),
    # ---- email syntax: 400 invalid_email ----
    _case("no @", body(email="ada.example.com"), 400, "invalid_email", "email"),
    _case("two @", body(email="ada@lovelace@example.com"), 400, "invalid_email", "email"),
    _case("display name", body(email="Ada <ada@example.com>"), 400, "invalid_email", "email"),
    _case("space inside", body(email="ada lovelace@example.com"), 400, "invalid_email", "email"),
    _case("trailing space", body(email="ada@example.com "), 400, "invalid_email", "email"),
    _case("leading dot", body(email=".ada@example.com"), 400, "invalid_email", "email"),
    _case("double dot", body(email="ada..l@example.com"), 400, "invalid_email", "email"),
    _case("quoted local part", body(email='"ada"@example.com'), 400, "invalid_email", "email"),
    _case("no dot in domain", body(email="ada@localhost"), 400, "invalid_email", "email"),
    _case("one-letter TLD", body(email="ada@example.c"), 400, "invalid_email", "email"),
    _case("IPv4 domain", body(email="ada@127.0.0.1"), 400, "invalid_email", "email"),
    _case("IP literal", body(email="ada@[127.0.0.1]"), 400, "invalid_email", "email"),
    _case(
        "label starting with a hyphen",
        body(email="ada@-example.com"),
        400,
        "invalid_email",
        "email",
    ),
    _case("trailing dot in domain", body(email="ada@example.com."), 400, "invalid_email", "email"),
    _case(
        "non-ASCII local part", body(email="ad\u00e4@example.com"), 400, "invalid_email", "email"
    ),
    _case("Unicode domain", body(email="ada@ex\u00e4mple.com"), 400, "invalid_email", "email"),
    _case(
        "header injection",
        body(email="ada@example.com\r\nBcc: all@example.com"),
        400,
        "invalid_email",
        "email",
    ),
    # ---- username: 400 invalid_username ----
    _case(
        "username starting with a dot", body(username=".ada"), 400, "invalid_username", "username"
    ),
    _case(
        "username with a space", body(username="ada lovelace"), 400, "invalid_username", "username"
    ),
    _case("username with @", body(username="ada@home"), 400, "invalid_username", "username"),
    _case("non-ASCII username", body(username="ad\u00e4"), 400, "invalid_username", "username"),
    _case(
        "path traversal username",
        body(username="../etc/passwd"),
        400,
        "invalid_username",
        "username",
    ),
    _case(
        "operator as username value", body(username="$where"), 400, "invalid_username", "username"
    ),
]
