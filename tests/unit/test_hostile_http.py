"""Hostile requests through the real HTTP stack: ``SquadSite`` (with ``LimitedRequest``), the
Klein routes and the group commit, on a fake store that must receive nothing from any of them.

``tests.unit.test_validation`` checks the same corpus against the validation functions; here each
case travels as bytes through Twisted's HTTP parser, so headers, lengths and bodies are seen
exactly as a client sends them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from squad.http.fields import MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES
from squad.http.site import LimitedRequest, SquadChannel, SquadSite
from squad.http.validation import FIELDS, MAX_BODY_BYTES
from squad.metrics import SquadMetrics
from tests.fakes import Squad, error_body
from tests.hostile_corpus import CASES, HostileCase, body
from tests.signups import VALID_PASSWORD, VALID_SIGNUP

# Property tests explore broadly but must stay quick in ./bin/test.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Bytes HTTP forbids in a header value (RFC 9110 section 5.5): Twisted's parser refuses the
# whole request before any route sees it.
_FORBIDDEN_IN_HEADERS = re.compile(b"[\x00\r\n]")


def send(squad: Squad, content_type: bytes | None, payload: bytes) -> tuple[Any, bytes]:
    """POST /users through the HTTP stack; the response and its body."""
    request = squad.post_users(payload, content_type=content_type)
    squad.settle()
    results: list[Any] = []
    request.addBoth(results.append)
    assert results, "no answer"
    response = results[0]
    assert hasattr(response, "code"), response
    contents: list[Any] = []
    response.content().addBoth(contents.append)
    assert contents and isinstance(contents[0], bytes), contents
    return response, contents[0]


class HostileCorpusTests(SynchronousTestCase):
    """One test per case of ``tests.hostile_corpus`` (generated below)."""

    def replay(self, case: HostileCase) -> None:
        squad = Squad()
        response, content = send(squad, case.content_type, case.body)
        expected_status: int = case.status
        expected_code: str | None = case.code
        expected_field: str | None = case.field
        if case.content_type is not None and _FORBIDDEN_IN_HEADERS.search(case.content_type):
            # The header never reaches the app: HTTP itself refuses the request (400), but the
            # answer must still be the contract's JSON error.
            expected_status, expected_code, expected_field = 400, None, None
        self.assertEqual(response.code, expected_status, content[:300])
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"], content[:300]
        )
        error = error_body(content)
        self.assertTrue(set(error) <= {"error", "message", "field"}, error)
        if expected_code is not None:
            self.assertEqual(error["error"], expected_code)
        if expected_field is not None:
            self.assertEqual(error.get("field"), expected_field)
        self.assertNotIn(VALID_PASSWORD, content.decode("utf-8"))
        self.assertEqual(squad.store.calls, [])
        self.assertEqual(squad.store.user_docs, {})
        self.assertEqual(squad.verification.calls, [])
        self.assertEqual(squad.slow_work.held, 0)
        self.assertEqual(squad.api.waiting, 0)


def _test_name(index: int, case: HostileCase) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", case.name.lower()).strip("_")
    return f"test_{index:03d}_{slug}"


def _make_replay(case: HostileCase) -> Any:
    def test(self: HostileCorpusTests) -> None:
        self.replay(case)

    field = f", field {case.field}" if case.field else ""
    test.__doc__ = (
        f"Hostile case {case.name!r}: answered {case.status} {case.code}{field}, "
        "a JSON error, and nothing reaches the store."
    )
    return test


for _index, _case in enumerate(CASES):
    setattr(HostileCorpusTests, _test_name(_index, _case), _make_replay(_case))


class CorpusCoverageTests(SynchronousTestCase):
    def test_every_case_has_its_own_test(self) -> None:
        """Each corpus case is replayed by exactly one generated test."""
        names = {_test_name(i, case) for i, case in enumerate(CASES)}
        self.assertEqual(len(names), len(CASES))
        self.assertTrue(all(hasattr(HostileCorpusTests, name) for name in names))

    def test_valid_signup_is_accepted_through_the_same_path(self) -> None:
        """The replay path itself works: the valid sign-up gets 201 and is stored once."""
        squad = Squad()
        response, content = send(squad, b"application/json", body())
        self.assertEqual(response.code, 201, content)
        self.assertEqual(len(squad.store.user_docs), 1)


# -- arbitrary bodies ------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_names = st.text(min_size=1, max_size=101)
_plausible_fields = st.fixed_dictionaries(
    {
        "firstName": _names | _json_values,
        "lastName": _names | _json_values,
        "email": st.emails() | st.text(max_size=30) | _json_values,
        "username": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{1,33}", fullmatch=True)
        | _json_values,
        "password": st.text(min_size=6, max_size=130) | _json_values,
    }
)
_signup_like = st.builds(
    lambda document, extra, missing: {
        **{k: v for k, v in document.items() if k not in missing},
        **extra,
    },
    _plausible_fields,
    st.dictionaries(st.text(max_size=12), _json_values, max_size=2),
    st.sets(st.sampled_from(FIELDS), max_size=2),
)


_name_characters = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))
_likely_valid = st.fixed_dictionaries(
    {
        "firstName": st.text(_name_characters, min_size=1, max_size=100),
        "lastName": st.text(_name_characters, min_size=1, max_size=100),
        "email": st.from_regex(
            r"[A-Za-z0-9._+-]{1,20}@[a-z0-9-]{1,12}\.[A-Za-z]{2,6}", fullmatch=True
        ),
        "username": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{2,31}", fullmatch=True),
        "password": st.text(min_size=8, max_size=128),
    }
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


_near_the_limit = st.integers(MAX_BODY_BYTES - 8, MAX_BODY_BYTES + 8).map(
    lambda size: body() + b" " * (size - len(body()))
)
BODIES = st.one_of(
    st.binary(max_size=1024),
    _json_values.map(_dumps),
    _signup_like.map(_dumps),
    _signup_like.map(lambda document: json.dumps(document).encode()),
    _likely_valid.map(_dumps),
    _likely_valid.map(lambda document: json.dumps(document).encode()),
    _near_the_limit,
)
CONTENT_TYPES = st.sampled_from(
    [b"application/json"] * 6
    + [b"application/json; charset=utf-8", b"APPLICATION/JSON", b"text/plain", None]
)


class ArbitraryBodyTests(SynchronousTestCase):
    @FUZZ
    @given(payload=BODIES, content_type=CONTENT_TYPES)
    def test_no_body_gets_a_5xx_or_is_stored_without_201(
        self, payload: bytes, content_type: bytes | None
    ) -> None:
        """Whatever the body, POST /users never answers 5xx, answers the contract's JSON
        error when it refuses, and the store receives something only when it answers 201."""
        squad = Squad()
        response, content = send(squad, content_type, payload)
        self.assertLess(response.code, 500, content[:300])
        if response.code == 201:
            user = json.loads(content)
            self.assertNotIn("password", user)
            self.assertEqual(list(squad.store.user_docs), [ObjectId(user["_id"])])
            self.assertEqual(squad.store.called("insert_signups"), 1)
        else:
            self.assertIn(response.code, (400, 413, 415))
            error_body(content)
            self.assertEqual(squad.store.calls, [])
            self.assertEqual(squad.store.user_docs, {})
        if len(payload) > MAX_BODY_BYTES:
            self.assertEqual(response.code, 413)  # whatever the type: refused at the headers

    @FUZZ
    @given(
        password=st.text(min_size=1, max_size=140).map(lambda text: "\u00a7pw\u00a7" + text),
        breakage=st.sampled_from(
            ["none", "email", "username", "unknown", "duplicate", "missing", "long name"]
        ),
    )
    def test_no_answer_contains_the_password(self, password: str, breakage: str) -> None:
        """Accepted or refused, no answer holds the password that was sent, in any spelling."""
        document: dict[str, Any] = {**VALID_SIGNUP, "password": password}
        if breakage == "email":
            document["email"] = "not-an-email"
        elif breakage == "username":
            document["username"] = "no spaces allowed"
        elif breakage == "unknown":
            document["isAdmin"] = True
        elif breakage == "missing":
            del document["lastName"]
        elif breakage == "long name":
            document["firstName"] = "A" * 101
        payload = _dumps(document)
        if breakage == "duplicate":
            payload = payload[:-1] + b', "password": ' + _dumps(password) + b"}"
        response, content = send(Squad(), b"application/json", payload)
        self.assertLess(response.code, 500)
        self.assert_absent(password, content)

    def test_no_corpus_answer_contains_the_password(self) -> None:
        """None of the hostile corpus's answers (nor the valid sign-up's) holds its password."""
        secrets = [VALID_PASSWORD, "other password"]
        for case in [*CASES, CASES[0]._replace(content_type=b"application/json")]:
            _, content = send(Squad(), case.content_type, case.body)
            for secret in secrets:
                self.assert_absent(secret, content)

    def assert_absent(self, password: str, content: bytes) -> None:
        text = content.decode("utf-8", "replace")
        for spelling in {password, json.dumps(password)[1:-1], json.dumps(password)}:
            self.assertNotIn(spelling, text)
        self.assertNotIn(password.encode("utf-8", "surrogatepass"), content)


# -- the body limit, at the HTTP layer --------------------------------------------------------


class Recorder(Resource):
    """An app that records the bodies it is given and answers 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.kinds: list[type[Request]] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(request.content.read())
        self.kinds.append(type(request))
        return b"ok"


class LimitedRequestTests(SynchronousTestCase):
    """``LimitedRequest`` under an ``HTTPChannel`` on a ``StringTransport``."""

    def setUp(self) -> None:
        self.app = Recorder()
        self.site = SquadSite(self.app, reactor=Clock())
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)
        # SquadSite's protocol is its HTTP/1.1 channel itself (squad serves no TLS, so no HTTP/2).
        self.channel: Any = protocol

    def head(self, *headers: bytes) -> bytes:
        return (
            b"POST /users HTTP/1.1\r\nHost: squad.test\r\n"
            + b"".join(header + b"\r\n" for header in headers)
            + b"\r\n"
        )

    def chunk(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def assert_refused(self) -> None:
        """The connection got exactly one raw 413 with a JSON body, and is closing."""
        output = self.transport.value()
        head, _, content = output.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), output[:200])
        headers = head.lower().split(b"\r\n")[1:]
        self.assertIn(b"connection: close", headers)
        self.assertIn(b"content-type: application/json", headers)
        self.assertIn(b"content-length: %d" % len(content), headers)
        error = error_body(content)
        self.assertEqual(error["error"], "body_too_large")
        self.assertIn("16 KiB", error["message"])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.app.bodies, [])

    def test_uses_limited_requests(self) -> None:
        """SquadSite's requests are LimitedRequests."""
        self.channel.dataReceived(self.head(b"Content-Length: 2") + b"{}")
        self.assertEqual(self.app.kinds, [LimitedRequest])

    def test_content_length_over_the_limit_is_refused_before_the_body(self) -> None:
        """A Content-Length over 16 KiB is answered 413 at the headers, before any body byte
        arrives, and the connection is closed."""
        self.channel.dataReceived(self.head(b"Content-Length: %d" % (MAX_BODY_BYTES + 1)))
        self.assert_refused()

    def test_huge_content_length_is_refused(self) -> None:
        """An absurd Content-Length is refused the same way, without trying to hold it."""
        self.channel.dataReceived(self.head(b"Content-Length: " + b"9" * 30))
        self.assert_refused()

    def test_body_sent_anyway_is_neither_kept_nor_served(self) -> None:
        """Bytes a refused client sends anyway (and a request pipelined after them) are
        dropped: nothing is buffered and the app sees nothing."""
        self.channel.dataReceived(self.head(b"Content-Length: %d" % (MAX_BODY_BYTES + 1)))
        request = self.channel.requests[0]
        answered = len(self.transport.value())
        for _ in range(4):
            self.channel.dataReceived(b"x" * (MAX_BODY_BYTES // 4))
        self.channel.dataReceived(b"x" + self.head(b"Content-Length: 2") + b"{}")
        self.assertEqual(request.content.getvalue(), b"")
        self.assertEqual(len(self.transport.value()), answered)
        self.assert_refused()

    def test_content_length_at_the_limit_is_served(self) -> None:
        """A body of exactly 16 KiB reaches the app whole."""
        payload = b"a" * MAX_BODY_BYTES
        self.channel.dataReceived(self.head(b"Content-Length: %d" % len(payload)) + payload)
        self.assertEqual(self.app.bodies, [payload])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertFalse(self.transport.disconnecting)

    def test_chunked_body_growing_over_the_limit_is_refused(self) -> None:
        """A chunked body (no length announced) is counted as it arrives: the chunk that takes
        it past 16 KiB gets the 413 and the connection closes; later chunks are ignored."""
        self.channel.dataReceived(self.head(b"Transfer-Encoding: chunked"))
        for _ in range(4):
            self.channel.dataReceived(self.chunk(b"b" * (MAX_BODY_BYTES // 4)))
        self.assertEqual(self.transport.value(), b"")
        self.channel.dataReceived(self.chunk(b"b"))
        self.assert_refused()
        answered = len(self.transport.value())
        self.channel.dataReceived(self.chunk(b"c" * 1000) + b"0\r\n\r\n")
        self.assertEqual(len(self.transport.value()), answered)
        self.assertEqual(self.channel.requests[0].content.getvalue(), b"")

    def test_chunked_body_at_the_limit_is_served(self) -> None:
        """A chunked body of exactly 16 KiB, in many small chunks, reaches the app whole."""
        self.channel.dataReceived(self.head(b"Transfer-Encoding: chunked"))
        for _ in range(MAX_BODY_BYTES // 256):
            self.channel.dataReceived(self.chunk(b"c" * 256))
        self.channel.dataReceived(b"0\r\n\r\n")
        self.assertEqual(self.app.bodies, [b"c" * MAX_BODY_BYTES])

    def test_expect_continue_gets_only_the_413(self) -> None:
        """A client that asks "Expect: 100-continue" for an oversized body gets the 413 and
        nothing after it: no "100 Continue" inviting it to send the body it was refused."""
        self.channel.dataReceived(
            self.head(b"Content-Length: %d" % (MAX_BODY_BYTES * 4), b"Expect: 100-continue")
        )
        self.assertNotIn(b"100 Continue", self.transport.value())
        self.assert_refused()

    def test_connection_loss_after_a_refusal_is_clean(self) -> None:
        """When the refused connection closes, the request is finished off without errors."""
        self.channel.dataReceived(self.head(b"Content-Length: %d" % (MAX_BODY_BYTES + 1)))
        request = self.channel.requests[0]
        lost = request.notifyFinish()
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(lost, ConnectionDone)


class MalformedHttpTests(SynchronousTestCase):
    def test_requests_http_refuses_still_get_a_json_error(self) -> None:
        """Requests Twisted's parser refuses before any route runs (a NUL in a header, a bad
        Content-Length, a malformed chunk) are still answered with the contract's JSON error
        body, and never reach the store."""
        squad = Squad()
        cases = [
            b"POST /users HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\x00\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            b"POST /users HTTP/1.1\r\nHost: s\r\nContent-Length: 12abc\r\n\r\n{}",
            b"POST /users HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ]
        for raw in cases:
            site = SquadSite(squad.api.app.resource(), reactor=squad.clock)
            channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50001))
            transport = StringTransport()
            channel.makeConnection(transport)
            channel.dataReceived(raw)
            head, _, content = transport.value().partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
            self.assertEqual(squad.store.calls, [])
            self.assertIn(b"content-type: application/json", head.lower(), raw)
            error_body(content)


def refused_answer(testcase: SynchronousTestCase, output: bytes, status: bytes) -> dict[str, Any]:
    """``output`` is exactly one raw JSON error answer with this status line start (``b"414 "``),
    framed with its Content-Length and Connection: close, naming no server; its body."""
    head, _, content = output.partition(b"\r\n\r\n")
    testcase.assertTrue(head.startswith(b"HTTP/1.1 " + status), output[:200])
    headers = head.lower().split(b"\r\n")[1:]
    testcase.assertIn(b"content-type: application/json", headers)
    testcase.assertIn(b"content-length: %d" % len(content), headers)
    testcase.assertIn(b"connection: close", headers)
    testcase.assertFalse([header for header in headers if header.startswith(b"server:")])
    return error_body(content)


class HeadLimitTests(SynchronousTestCase):
    """An over-long request line or header block, through ``SquadChannel`` on a
    ``StringTransport``: Twisted would close the connection without a word, or answer an empty
    400; squad answers the API's JSON 414 or 431, then closes."""

    def setUp(self) -> None:
        self.app = Recorder()
        self.site = SquadSite(self.app, reactor=Clock())
        self.channel: Any = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50002))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def request(self, path: bytes = b"/users", *headers: bytes) -> bytes:
        return (
            b"POST "
            + path
            + b" HTTP/1.1\r\n"
            + b"".join(header + b"\r\n" for header in headers)
            + b"Content-Length: 2\r\n\r\n{}"
        )

    def assert_refused(self, status: bytes, code: str) -> None:
        """One JSON answer with this status and code, the connection closing, the app unused."""
        error = refused_answer(self, self.transport.value(), status)
        self.assertEqual(error["error"], code)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.app.bodies, [])

    def test_the_limits_are_squads(self) -> None:
        """The channel reads lines of at most 16 KiB, 16 KiB of head in all and 500 headers:
        the limits the answers and the OpenAPI document name."""
        self.assertIsInstance(self.channel, SquadChannel)
        self.assertEqual(
            (self.channel.MAX_LENGTH, self.channel.totalHeadersSize, self.channel.maxHeaders),
            (MAX_REQUEST_LINE_BYTES, MAX_HEADER_BYTES, MAX_HEADERS),
        )
        self.assertEqual((MAX_REQUEST_LINE_BYTES, MAX_HEADER_BYTES), (16 * 1024, 16 * 1024))

    def test_a_70_kb_request_line_gets_414(self) -> None:
        """A request line of 70 KB, arriving at once, gets a JSON 414 uri_too_long and a
        closed connection."""
        self.channel.dataReceived(self.request(b"/" + b"a" * 70_000))
        self.assert_refused(b"414 ", "uri_too_long")

    def test_a_request_line_trickling_past_the_limit_gets_414_once(self) -> None:
        """A request line that never ends, sent a kilobyte at a time, is refused as soon as it
        passes the limit, once: the bytes that follow, a whole request among them, are not
        read."""
        self.channel.dataReceived(b"GET /")
        sent = 5
        while not self.transport.value():
            self.channel.dataReceived(b"a" * 1024)
            sent += 1024
        self.assertLessEqual(sent, MAX_REQUEST_LINE_BYTES + 1024 + 2)
        answered = self.transport.value()
        self.channel.dataReceived(b"a" * 1024 + b" HTTP/1.1\r\n\r\n" + self.request())
        self.assertEqual(self.transport.value(), answered)
        self.assert_refused(b"414 ", "uri_too_long")

    def test_a_long_request_line_within_the_limit_is_served(self) -> None:
        """A request line of 16,000 bytes, under the limit, reaches the app."""
        path = b"/" + b"a" * (16_000 - len(b"POST / HTTP/1.1"))
        self.channel.dataReceived(self.request(path))
        self.assertEqual(self.app.bodies, [b"{}"])
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 "))

    def test_a_header_line_over_the_limit_gets_431(self) -> None:
        """One header line longer than 16 KiB gets a JSON 431 headers_too_large, not 414: the
        request line was fine."""
        self.channel.dataReceived(self.request(b"/users", b"X-Big: " + b"b" * 20_000))
        self.assert_refused(b"431 ", "headers_too_large")

    def test_headers_over_16_kib_in_all_get_431(self) -> None:
        """Twenty headers of 1 KB each (every line within the limit, the head over 16 KiB) get
        a JSON 431, where Twisted answers an empty 400."""
        headers = [b"X-H%d: %s" % (n, b"h" * 1000) for n in range(20)]
        self.channel.dataReceived(self.request(b"/users", *headers))
        self.assert_refused(b"431 ", "headers_too_large")

    def test_more_than_500_headers_get_431(self) -> None:
        """501 short headers get a JSON 431; 500 are served."""
        self.channel.dataReceived(
            self.request(b"/users", *(b"X-%d: 1" % n for n in range(MAX_HEADERS - 1)))
        )
        self.assertEqual(self.app.bodies, [b"{}"])  # with Content-Length, 500 headers
        self.setUp()
        self.channel.dataReceived(
            self.request(b"/users", *(b"X-%d: 1" % n for n in range(MAX_HEADERS)))
        )
        self.assert_refused(b"431 ", "headers_too_large")

    def test_after_a_served_request_a_long_line_is_still_told_apart(self) -> None:
        """On a kept-alive connection, after a request was answered, a too-long request line
        gets 414 and a too-long header line of the next request 431."""
        self.channel.dataReceived(self.request())
        self.assertEqual(self.app.bodies, [b"{}"])
        served = len(self.transport.value())
        self.channel.dataReceived(b"GET /" + b"a" * (MAX_REQUEST_LINE_BYTES + 10))
        self.assertEqual(
            refused_answer(self, self.transport.value()[served:], b"414 ")["error"],
            "uri_too_long",
        )
        self.setUp()
        self.channel.dataReceived(self.request())
        served = len(self.transport.value())
        self.channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * MAX_REQUEST_LINE_BYTES)
        self.assertEqual(
            refused_answer(self, self.transport.value()[served:], b"431 ")["error"],
            "headers_too_large",
        )

    def test_refusals_are_counted_by_code(self) -> None:
        """Each refusal of a head adds one to squad_http_errors_total under its code."""
        from prometheus_client import REGISTRY

        def counted(code: str) -> float:
            SquadMetrics.get()
            labels = {"code": code}
            return REGISTRY.get_sample_value("squad_http_errors_total", labels) or 0.0

        before = counted("uri_too_long")
        self.channel.dataReceived(b"GET /" + b"a" * 70_000)
        self.assertEqual(counted("uri_too_long"), before + 1)
        self.setUp()
        before = counted("headers_too_large")
        self.channel.dataReceived(self.request(b"/users", b"X-Big: " + b"b" * 20_000))
        self.assertEqual(counted("headers_too_large"), before + 1)

    def test_a_malformed_header_is_still_400(self) -> None:
        """A header without a colon is malformed HTTP (400 malformed_http), not too large."""
        self.channel.dataReceived(self.request(b"/users", b"no colon here"))
        self.assert_refused(b"400 ", "malformed_http")


class AnswerFramingTests(SynchronousTestCase):
    """What ``LimitedRequest`` puts around every answer, seen as bytes on the wire."""

    def setUp(self) -> None:
        self.app = Recorder()
        self.site = SquadSite(self.app, reactor=Clock())
        self.channel: Any = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50003))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def test_an_http_1_1_answer_has_a_content_length_not_chunks(self) -> None:
        """An HTTP/1.1 answer is framed by its Content-Length, not chunked, names no server,
        and leaves the connection open for the next request."""
        self.channel.dataReceived(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        head, _, content = self.transport.value().partition(b"\r\n\r\n")
        headers = head.lower().split(b"\r\n")
        self.assertEqual(headers[0], b"http/1.1 200 ok")
        self.assertIn(b"content-length: 2", headers)
        self.assertEqual(content, b"ok")
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertNotIn(b"server", head.lower())
        self.assertIn(b"date: ", head.lower())
        self.assertFalse(self.transport.disconnecting)

    def test_several_writes_make_one_framed_answer(self) -> None:
        """A resource that writes its body in pieces still gets one answer with the whole
        length, written once it finishes."""

        class Pieces(Resource):
            isLeaf = True

            def render_GET(self, request: Request) -> int:
                for piece in (b"one ", b"two ", b"three"):
                    request.write(piece)
                request.finish()
                return NOT_DONE_YET

        site = SquadSite(Pieces(), reactor=Clock())
        channel: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50004))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        head, _, content = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 13", head.lower().split(b"\r\n"))
        self.assertEqual(content, b"one two three")

    def test_a_head_request_gets_the_length_without_the_body(self) -> None:
        """HEAD answers the Content-Length a GET would have, and no body."""

        class Known(Resource):
            isLeaf = True

            def render_GET(self, request: Request) -> bytes:
                return b"twelve bytes"

        site = SquadSite(Known(), reactor=Clock())
        channel: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50005))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"HEAD / HTTP/1.1\r\n\r\n")
        head, _, content = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 12", head.lower().split(b"\r\n"))
        self.assertEqual(content, b"")
