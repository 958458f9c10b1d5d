"""Tests for squad.http.validation: what a sign-up body must be, and how everything else is
refused."""

from __future__ import annotations

import json
import string
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from squad.http.errors import render_error
from squad.http.fields import FIELDS, MAX_BODY_BYTES, MAX_NESTING
from squad.http.validation import (
    InvalidRequest,
    _too_deep,
    check_content_type,
    parse_signup,
)
from squad.signup import SignUp
from tests.hostile_corpus import CASES, JSON, HostileCase, body
from tests.signups import VALID_PASSWORD, VALID_SIGNUP

# Property tests explore broadly but must stay quick in ./bin/test.
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refusal(request_body: bytes, content_type: bytes | str | None = JSON) -> InvalidRequest:
    """The InvalidRequest that the edge raises for this request (fails the test if none)."""
    try:
        check_content_type(content_type)
        parse_signup(request_body)
    except InvalidRequest as error:
        return error
    raise AssertionError(f"accepted: {request_body[:200]!r}")


def outcome(request_body: bytes) -> SignUp | InvalidRequest:
    """parse_signup's result or refusal; any other exception escapes and fails the test."""
    try:
        return parse_signup(request_body)
    except InvalidRequest as error:
        return error


def answer_body(error: InvalidRequest) -> dict[str, Any]:
    """The JSON body of the HTTP answer to this refusal."""
    document: dict[str, Any] = json.loads(
        render_error(error.kind, error.message, field=error.field).body
    )
    return document


def assert_safe_refusal(testcase: SynchronousTestCase, error: InvalidRequest) -> None:
    """A refusal has a known status, a code, and a short ASCII message that echoes no value."""
    testcase.assertIn(error.status, (400, 413, 415))
    testcase.assertTrue(error.code)
    testcase.assertTrue(error.message.isascii(), error.message)
    testcase.assertLessEqual(len(error.message), 300)
    testcase.assertEqual(str(error), error.message)
    answer_body(error)  # always serialisable


class ValidSignUpTests(SynchronousTestCase):
    """Valid bodies are accepted, and normalised only where documented."""

    def test_accepts_the_reference_body(self) -> None:
        """The five string fields come back as a SignUp, unchanged."""
        self.assertEqual(
            parse_signup(body()),
            SignUp("Ada", "Lovelace", "ada@example.com", "ada_lovelace", VALID_PASSWORD),
        )

    def test_email_domain_is_lowercased_local_part_kept(self) -> None:
        """The domain is case-insensitive and lowercased; the local part keeps its case."""
        signup = parse_signup(body(email="Ada.Lovelace@Example.COM"))
        self.assertEqual(signup.email, "Ada.Lovelace@example.com")

    def test_nothing_else_is_normalised(self) -> None:
        """Names, username and password are returned exactly as sent, inner spaces included."""
        signup = parse_signup(
            body(firstName="Mary Ann", lastName="O'Brien-Smith", username="Ada.L-1_x")
        )
        self.assertEqual(
            (signup.first_name, signup.last_name, signup.username),
            ("Mary Ann", "O'Brien-Smith", "Ada.L-1_x"),
        )

    def test_unicode_names_and_password(self) -> None:
        """Names and passwords may use any script; they are counted in characters."""
        signup = parse_signup(
            body(firstName="José", lastName="李" * 100, password="пароль🔑" + "é" * 121)
        )
        self.assertEqual(signup.first_name, "José")
        self.assertEqual(len(signup.last_name), 100)
        self.assertEqual(len(signup.password), 128)

    def test_password_keeps_its_whitespace(self) -> None:
        """Whitespace is part of a password: it is neither trimmed nor refused."""
        self.assertEqual(parse_signup(body(password="  spaced out  ")).password, "  spaced out  ")

    def test_boundary_lengths_are_accepted(self) -> None:
        """Every documented limit is inclusive."""
        local = "a" * 64
        email = f"{local}@{'b' * 63}.{'c' * 63}.{'d' * 57}.com"
        self.assertEqual(len(email), 254)
        signup = parse_signup(
            body(firstName="A", lastName="L" * 100, username="abc", password="p" * 8, email=email)
        )
        self.assertEqual(signup.email, email)
        self.assertEqual(
            parse_signup(body(username="u" * 32, password="p" * 128)).username, "u" * 32
        )

    def test_email_shapes_that_are_valid(self) -> None:
        """Dot-atoms with RFC 5322 specials, subdomains, hyphens and xn-- TLDs are accepted."""
        for email in (
            "first.last+tag@sub.example.co.uk",
            "o'hara!#$%&*/=?^_`{|}~-@example.com",
            "a@b-c.example",
            "user@xn--bcher-kva.xn--p1ai",
            "1@2.io",
        ):
            with self.subTest(email=email):
                self.assertEqual(parse_signup(body(email=email)).email, email)

    def test_key_order_and_whitespace_do_not_matter(self) -> None:
        """Any key order and any JSON whitespace around tokens are fine."""
        reordered = json.dumps(dict(reversed(list(VALID_SIGNUP.items()))), indent=4).encode()
        self.assertEqual(parse_signup(b"\r\n\t " + reordered + b" \n"), parse_signup(body()))

    def test_body_of_exactly_the_limit(self) -> None:
        """A body of exactly MAX_BODY_BYTES is accepted; the limit is inclusive."""
        valid = body()
        padded = valid[:-1] + b" " * (MAX_BODY_BYTES - len(valid)) + b"}"
        self.assertEqual(len(padded), MAX_BODY_BYTES)
        self.assertEqual(parse_signup(padded), parse_signup(valid))

    def test_brackets_inside_strings_are_not_nesting(self) -> None:
        """Brackets, quotes and backslashes inside values never count as nesting."""
        password = '[[[[{{{{\\"]]]]}}}}' * 7  # 126 characters, far over MAX_NESTING brackets
        signup = parse_signup(body(password=password, lastName="{[(" * 30))
        self.assertEqual(signup.password, password)

    def test_escaped_json_is_decoded(self) -> None:
        """JSON escapes, including surrogate pairs, decode to the characters they stand for."""
        raw = body(firstName="x").replace(b'"x"', b'"Jos\\u00e9 \\ud83d\\ude00"')
        self.assertEqual(parse_signup(raw).first_name, "José 😀")

    def test_repr_hides_the_password(self) -> None:
        """A SignUp's repr (so any log line that prints one) never shows the password."""
        signup = parse_signup(body())
        self.assertNotIn(VALID_PASSWORD, repr(signup))
        self.assertIn("Lovelace", repr(signup))

    def test_signup_is_immutable(self) -> None:
        """A SignUp cannot be changed after validation."""
        signup = parse_signup(body())
        with self.assertRaises(AttributeError):
            signup.email = "eve@example.com"  # type: ignore[misc]


class ContentTypeTests(SynchronousTestCase):
    """Only JSON, in UTF-8, is accepted."""

    def test_json_spellings_accepted(self) -> None:
        """Case, spacing, quoting and extra parameters do not matter; bytes and str both work."""
        for value in (
            b"application/json",
            "application/json",
            b"Application/JSON",
            b"application/json;charset=utf-8",
            b'application/json; charset="UTF-8"',
            b"application/json; charset=utf8",
            b"application/json ; foo=bar",
            b"application/json;",
        ):
            with self.subTest(value=value):
                check_content_type(value)  # accepted: it returns without raising

    def test_refusal_names_a_short_type(self) -> None:
        """A short printable content type is quoted back, to help the client's author."""
        error = refusal(body(), b"text/plain")
        self.assertEqual((error.status, error.code), (415, "unsupported_media_type"))
        self.assertIn("'text/plain'", error.message)
        self.assertIn("application/json", error.message)

    def test_content_type_checked_before_body(self) -> None:
        """A wrong content type is reported even when the body is also wrong."""
        self.assertEqual(refusal(b"\xff" * 20000, b"text/plain").status, 415)


class HostileCorpusTests(SynchronousTestCase):
    """The shared corpus of hostile requests, checked case by case below."""

    def test_corpus_is_large_and_names_are_unique(self) -> None:
        """The corpus keeps at least 60 cases, each with its own name."""
        self.assertGreaterEqual(len(CASES), 60)
        self.assertEqual(len({case.name for case in CASES}), len(CASES))

    def test_only_content_type_cases_carry_a_valid_body(self) -> None:
        """Every body is invalid except in 415 cases, where the header alone must refuse it."""
        for case in CASES:
            with self.subTest(case=case.name):
                if case.status != 415:
                    self.assertIsInstance(outcome(case.body), InvalidRequest)

    def test_corpus_covers_every_status(self) -> None:
        """The corpus exercises 400, 413 and 415."""
        self.assertEqual({case.status for case in CASES}, {400, 413, 415})


def _corpus_test(case: HostileCase) -> Callable[[HostileCorpusTests], None]:
    def test(self: HostileCorpusTests) -> None:
        error = refusal(case.body, case.content_type)
        self.assertEqual((error.status, error.code, error.field), case[3:])
        assert_safe_refusal(self, error)
        self.assertNotIn(VALID_PASSWORD, error.message)
        expected = {"error": case.code, "message": error.message}
        if case.field is not None:
            expected["field"] = case.field
        self.assertEqual(answer_body(error), expected)

    test.__doc__ = (
        f"Hostile case {case.name!r} is refused with {case.status} {case.code}"
        f"{f' naming {case.field}' if case.field else ''}."
    )
    return test


for _index, _case in enumerate(CASES):
    _slug = "".join(c if c.isalnum() else "_" for c in _case.name.lower()).strip("_")
    setattr(HostileCorpusTests, f"test_case_{_index:03d}_{_slug}", _corpus_test(_case))


class RefusalTests(SynchronousTestCase):
    """The shape and the wording of refusals."""

    def test_error_body_without_field(self) -> None:
        """When no single field is at fault, the error body has only error and message."""
        error = refusal(b"[]")
        self.assertEqual(set(answer_body(error)), {"error", "message"})

    def test_message_names_the_field_and_rule(self) -> None:
        """A field's refusal names the field and states the limit it broke."""
        error = refusal(body(username="a" * 40))
        self.assertIn("username", error.message)
        self.assertIn("32", error.message)

    def test_unknown_keys_reported_before_missing_ones(self) -> None:
        """A misspelt key is reported as unknown, not as the field it was meant to be."""
        error = refusal(json.dumps({"firstname": "Ada"}).encode())
        self.assertEqual((error.code, error.field), ("unknown_field", "firstname"))

    def test_fields_checked_in_documented_order(self) -> None:
        """With several bad fields, the first in FIELDS order is reported."""
        error = refusal(body(password="x", username="!", email="no", lastName=""))
        self.assertEqual(error.field, "lastName")

    def test_invalid_json_message_says_where(self) -> None:
        """A syntax error's message gives the line and column, not the text around it."""
        error = refusal(b'{"firstName": "Ada",\n  oops}')
        self.assertIn("line 2 column 3", error.message)
        self.assertNotIn("oops", error.message)

    def test_refusals_do_not_chain_the_body(self) -> None:
        """A refusal keeps no chained exception that holds the body or the password."""
        for raw in (
            b'{"password": "' + VALID_PASSWORD.encode() + b'"',  # JSONDecodeError.doc
            b'{"password": "' + VALID_PASSWORD.encode() + b'\xff"}',  # UnicodeDecodeError.object
            body(password=VALID_PASSWORD + "\udc80"),  # UnicodeEncodeError.object
        ):
            with self.subTest(body=raw):
                error = refusal(raw)
                self.assertIsNone(error.__cause__)
                self.assertIsNone(error.__context__)

    def test_password_is_never_echoed(self) -> None:
        """Whatever is wrong, and wherever the password was put, no message contains it."""
        secret = "hunter2 QZXJ s3cret"
        for raw in (
            body(password=secret + "\x00"),
            body(password=secret * 10),
            body(email=secret),
            body(username=secret),
            body(firstName=secret + "\n"),
            body(password=secret, extra=1)[:-3],
        ):
            with self.subTest(body=raw[:60]):
                error = refusal(raw)
                self.assertNotIn("QZXJ", json.dumps(answer_body(error)))


class BidiControlTests(SynchronousTestCase):
    """Unicode's bidirectional controls, which make text display other than it reads."""

    def test_every_bidi_control_is_refused_in_names(self) -> None:
        """Each of U+202A-U+202E and U+2066-U+2069, at the start, inside or at the end of
        firstName or lastName, is refused with invalid_characters, a message naming the
        bidirectional controls, and the field."""
        for control in BIDI_CONTROLS:
            for field in ("firstName", "lastName"):
                for value in (control + "Ada", "A" + control + "da", "Ada" + control):
                    with self.subTest(control=hex(ord(control)), field=field, value=value):
                        error = refusal(body(**{field: value}))
                        self.assertEqual((error.code, error.field), ("invalid_characters", field))
                        self.assertIn("bidirectional controls", error.message)
                        self.assertIn("U+202A", error.message)
                        assert_safe_refusal(self, error)

    def test_control_characters_keep_their_own_message(self) -> None:
        """A control character before a bidi control is reported as the control character;
        a bidi control first is reported as that (the first forbidden character decides)."""
        self.assertIn("control characters", refusal(body(firstName="A\nda\u202e")).message)
        self.assertIn("bidirectional", refusal(body(firstName="A\u202eda\n")).message)

    def test_neighbours_of_the_bidi_controls_are_names(self) -> None:
        """The characters beside the refused ranges stay valid inside a name (U+202F, the
        narrow no-break space, U+2065 and U+206A), and so do the implicit marks U+200E and
        U+200F, which are not in the refused ranges."""
        for inner in ("\u202f", "\u2065", "\u206a", "\u200e", "\u200f"):
            with self.subTest(character=hex(ord(inner))):
                self.assertEqual(
                    parse_signup(body(lastName="Love" + inner + "lace")).last_name,
                    "Love" + inner + "lace",
                )

    def test_username_and_email_refuse_them_as_any_non_ascii(self) -> None:
        """username and email are ASCII, so a bidi control gets the same refusal as a control
        character there: invalid_username and invalid_email."""
        for control in BIDI_CONTROLS:
            self.assertEqual(refusal(body(username=f"ada{control}l")).code, "invalid_username")
            self.assertEqual(refusal(body(email=f"ada{control}@example.com")).code, "invalid_email")
        self.assertEqual(refusal(body(username="ada\x01l")).code, "invalid_username")
        self.assertEqual(refusal(body(email="ada\x01@example.com")).code, "invalid_email")

    def test_a_password_may_hold_them(self) -> None:
        """A password keeps every character but NUL: it is never displayed, only hashed, and
        control characters are allowed in it too."""
        password = "correct\u202ehorse\u2066battery"
        self.assertEqual(parse_signup(body(password=password)).password, password)


@contextmanager
def recursion_limit(headroom: int) -> Iterator[None]:
    """Run with only ``headroom`` frames left before RecursionError."""
    frame: Any = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + headroom)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class NestingTests(SynchronousTestCase):
    """Deep nesting is refused before the parser can recurse."""

    def test_limit_is_exact(self) -> None:
        """Depth MAX_NESTING parses (and is refused as a type error); one more is too deep."""
        at_limit = body(firstName="x").replace(
            b'"x"', b"[" * (MAX_NESTING - 1) + b"1" + b"]" * (MAX_NESTING - 1)
        )
        over = body(firstName="x").replace(b'"x"', b"[" * MAX_NESTING + b"1" + b"]" * MAX_NESTING)
        self.assertEqual(refusal(at_limit).code, "invalid_type")
        self.assertEqual(refusal(over).code, "nesting_too_deep")

    def test_deep_body_never_reaches_the_parser(self) -> None:
        """With almost no stack left, a deeply nested body is still refused as too deep."""
        deep = b'{"a":' * 3000
        with recursion_limit(60):
            error = refusal(deep)
        self.assertEqual(error.code, "nesting_too_deep")

    @FUZZ
    @given(
        depth=st.integers(1, 16000),
        opener=st.sampled_from([b"[", b"{", b'{"a":', b"[ ", b'["x",', b'{"a":"]","b":']),
        closed=st.booleans(),
    )
    def test_any_nesting_is_refused_cleanly(self, depth: int, opener: bytes, closed: bool) -> None:
        """Nesting of any depth and shape gives an InvalidRequest, never a RecursionError."""
        raw = opener * depth
        if closed:
            raw += b"1" + b"]" * depth
        error = outcome(raw[: MAX_BODY_BYTES + 1])
        self.assertIsInstance(error, InvalidRequest)

    @FUZZ
    @given(
        inner=st.recursive(
            st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), children, max_size=3)
            ),
            max_leaves=10,
        ),
        wrappers=st.lists(st.sampled_from(["list", "dict"]), max_size=2 * MAX_NESTING),
    )
    def test_depth_scan_matches_the_parser(self, inner: object, wrappers: list[str]) -> None:
        """For valid JSON, the pre-parse scan says "too deep" exactly when the depth is over."""
        value = inner
        for wrapper in wrappers:
            value = [value] if wrapper == "list" else {"k": value}
        raw = json.dumps(value).encode()
        self.assertEqual(_too_deep(raw), _depth(value) > MAX_NESTING)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# ---- generators of valid sign-ups -------------------------------------------------------------

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NAME_CHARACTER = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=BIDI_CONTROLS)
names = st.text(_NAME_CHARACTER, min_size=1, max_size=100).filter(
    lambda text: not text[0].isspace() and not text[-1].isspace()
)
usernames = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{2,31}", fullmatch=True)
passwords = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=8, max_size=128
)
_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(_ATEXT, min_size=1, max_size=10)
_labels = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_tlds = st.from_regex(r"[A-Za-z]{2,6}|[Xx][Nn]--[a-z0-9]{2,8}", fullmatch=True)


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(_atoms, min_size=1, max_size=4)))
    domain = ".".join([*draw(st.lists(_labels, min_size=1, max_size=4)), draw(_tlds)])
    address = f"{local}@{domain}"
    assume(len(local) <= 64 and len(address) <= 254)
    return address


@st.composite
def signups(draw: st.DrawFn) -> dict[str, str]:
    values = {
        "firstName": draw(names),
        "lastName": draw(names),
        "email": draw(emails()),
        "username": draw(usernames),
        "password": draw(passwords),
    }
    order = draw(st.permutations(list(values)))
    return {key: values[key] for key in order}


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=12) | st.sampled_from(FIELDS), children, max_size=6)
    ),
    max_leaves=25,
)


class PropertyTests(SynchronousTestCase):
    """Fuzzing: nothing but InvalidRequest ever escapes, and valid input always passes."""

    @FUZZ
    @given(raw=st.binary(max_size=MAX_BODY_BYTES + 64))
    def test_arbitrary_bytes(self, raw: bytes) -> None:
        """Arbitrary bytes give a SignUp or a clean refusal, nothing else."""
        result = outcome(raw)
        if isinstance(result, InvalidRequest):
            assert_safe_refusal(self, result)

    @FUZZ
    @given(value=_json_values, ensure_ascii=st.booleans())
    def test_arbitrary_json(self, value: object, ensure_ascii: bool) -> None:
        """Any JSON value (NaN and infinities included) parses or gives a clean refusal."""
        raw = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
        result = outcome(raw)
        if isinstance(result, InvalidRequest):
            assert_safe_refusal(self, result)

    @FUZZ
    @given(signup=signups(), extra=st.dictionaries(st.text(max_size=8), _json_values, max_size=3))
    def test_objects_near_a_signup(self, signup: dict[str, str], extra: dict[str, object]) -> None:
        """A valid sign-up with arbitrary extra members is refused cleanly, never crashes."""
        assume(not extra.keys() <= signup.keys())
        raw = json.dumps({**signup, **extra}).encode("utf-8", "surrogatepass")
        result = outcome(raw)
        self.assertIsInstance(result, InvalidRequest)
        assert isinstance(result, InvalidRequest)
        assert_safe_refusal(self, result)

    @FUZZ
    @given(raw=st.binary(min_size=1, max_size=200), data=st.data())
    def test_mutated_valid_bodies(self, raw: bytes, data: st.DataObject) -> None:
        """A valid body with bytes spliced in anywhere is accepted or refused cleanly."""
        valid = body()
        at = data.draw(st.integers(0, len(valid)))
        cut = data.draw(st.integers(0, 8))
        result = outcome(valid[:at] + raw + valid[at + cut :])
        if isinstance(result, InvalidRequest):
            assert_safe_refusal(self, result)

    @FUZZ
    @given(signup=signups(), ensure_ascii=st.booleans())
    def test_valid_signups_always_parse(self, signup: dict[str, str], ensure_ascii: bool) -> None:
        """Every generated valid sign-up parses to exactly its fields, the domain lowercased."""
        raw = json.dumps(signup, ensure_ascii=ensure_ascii).encode("utf-8")
        local, _, domain = signup["email"].partition("@")
        self.assertEqual(
            parse_signup(raw),
            SignUp(
                signup["firstName"],
                signup["lastName"],
                f"{local}@{domain.lower()}",
                signup["username"],
                signup["password"],
            ),
        )

    @FUZZ
    @given(
        signup=signups(),
        prefix=st.text(max_size=140),
        suffix=st.text(max_size=140),
        mutation=st.sampled_from(
            [
                "none",
                "drop-field",
                "unknown-key",
                "password-as-email",
                "password-as-username",
                "password-as-name",
                "duplicate-password",
                "truncate",
                "nested-password",
            ]
        ),
        data=st.data(),
    )
    def test_messages_never_contain_the_password(
        self, signup: dict[str, str], prefix: str, suffix: str, mutation: str, data: st.DataObject
    ) -> None:
        """Whatever the password and whatever else is wrong, no refusal contains the password."""
        password = prefix + "QZXJ" + suffix  # the marker cannot occur in any message template
        document: dict[str, object] = {**signup, "password": password}
        if mutation == "drop-field":
            del document[data.draw(st.sampled_from(FIELDS[:4]))]
        elif mutation == "unknown-key":
            document["isAdmin"] = True
        elif mutation == "password-as-email":
            document["email"] = password
        elif mutation == "password-as-username":
            document["username"] = password
        elif mutation == "password-as-name":
            document["firstName"] = password
        elif mutation == "nested-password":
            document["password"] = [password]
        raw = json.dumps(document).encode("utf-8")
        if mutation == "duplicate-password":
            raw = raw[:-1] + b', "password": ' + json.dumps(password).encode() + b"}"
        elif mutation == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        result = outcome(raw)
        if isinstance(result, SignUp):
            self.assertEqual(result.password, password)
            self.assertNotIn("password=", repr(result))  # another field may hold the same text
            return
        shown = json.dumps(answer_body(result), ensure_ascii=False) + str(result) + repr(result)
        self.assertNotIn("QZXJ", shown)
        self.assertNotIn(password, shown)

    @FUZZ
    @given(value=st.none() | st.text() | st.binary())
    def test_arbitrary_content_types(self, value: bytes | str | None) -> None:
        """Any header value is accepted or refused with 415, nothing else."""
        try:
            check_content_type(value)
        except InvalidRequest as error:
            self.assertEqual(error.status, 415)
            assert_safe_refusal(self, error)
