"""The table of error answers (squad.http.errors) and the answers rendered from it, through a
Twisted request and written by hand to the socket (squad.http.site)."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from squad.http.errors import (
    ERRORS,
    RETRY_AFTER_SECONDS,
    ErrorAnswer,
    ErrorKind,
    render_error,
    write_error,
)
from squad.http.fields import MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES
from squad.http.site import (
    BAD_REQUEST,
    HEADERS_TOO_LARGE,
    TOO_LARGE,
    TOO_MANY_CONNECTIONS,
    URI_TOO_LONG,
    raw_error,
    request_timeout_answer,
)
from squad.metrics import SquadMetrics

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def errors_counted(code: str) -> float:
    """squad_http_errors_total for ``code`` in this process."""
    from prometheus_client import REGISTRY

    SquadMetrics.get()
    return REGISTRY.get_sample_value("squad_http_errors_total", {"code": code}) or 0.0


class TableTests(SynchronousTestCase):
    def test_codes_are_stable_snake_case_names(self) -> None:
        """Every code is snake_case and is its member's name in lower case, so a call site
        names the code it answers."""
        for kind in ErrorKind:
            self.assertIsNotNone(SNAKE_CASE.fullmatch(kind.code), kind)
            self.assertEqual(kind.name, kind.code.upper())

    def test_statuses_are_errors(self) -> None:
        """Every kind has a 4xx or 5xx status."""
        for kind in ErrorKind:
            self.assertTrue(400 <= kind.status < 600, kind)

    def test_only_503s_carry_retry_after(self) -> None:
        """A kind tells the client when to retry exactly when its status is 503."""
        for kind in ErrorKind:
            self.assertEqual(kind.retry_after, kind.status == 503, kind)
        self.assertEqual(
            {kind.code for kind in ErrorKind if kind.retry_after},
            {"database_unavailable", "overloaded", "too_many_connections"},
        )

    def test_every_kind_has_a_sentence(self) -> None:
        """Each default message is one short ASCII sentence, different from every other."""
        messages = [kind.message for kind in ErrorKind]
        self.assertEqual(len(set(messages)), len(messages))
        for message in messages:
            self.assertTrue(message.isascii(), message)
            self.assertTrue(message.endswith("."), message)
            self.assertLessEqual(len(message), 200, message)

    def test_errors_maps_codes_to_kinds_in_order(self) -> None:
        """ERRORS finds each kind by its code, in the table's order, and cannot be changed."""
        self.assertEqual(list(ERRORS.values()), list(ErrorKind))
        self.assertIs(ERRORS["not_found"], ErrorKind.NOT_FOUND)
        with self.assertRaises(TypeError):
            cast(Any, ERRORS)["oops"] = ErrorKind.NOT_FOUND

    def test_statuses_of_well_known_codes(self) -> None:
        """The codes clients branch on keep the statuses the API has always given them."""
        self.assertEqual(
            {
                code: ERRORS[code].status
                for code in (
                    "unsupported_media_type",
                    "body_too_large",
                    "invalid_json",
                    "idempotency_key_reused",
                    "request_in_progress",
                    "user_not_found",
                    "method_not_allowed",
                    "request_timeout",
                    "overloaded",
                    "invalid_characters",
                    "uri_too_long",
                    "headers_too_large",
                )
            },
            {
                "unsupported_media_type": 415,
                "body_too_large": 413,
                "invalid_json": 400,
                "idempotency_key_reused": 422,
                "request_in_progress": 409,
                "user_not_found": 404,
                "method_not_allowed": 405,
                "request_timeout": 408,
                "overloaded": 503,
                "invalid_characters": 400,
                "uri_too_long": 414,
                "headers_too_large": 431,
            },
        )


class RenderTests(SynchronousTestCase):
    def test_default_sentence(self) -> None:
        """Without a message the answer carries the kind's own sentence, as JSON with the
        code, the status of the table and a JSON Content-Type."""
        answer = render_error(ErrorKind.NOT_FOUND)
        self.assertEqual(
            answer,
            ErrorAnswer(
                404,
                ((b"Content-Type", b"application/json"),),
                b'{"error": "not_found", "message": "There is nothing at this address."}',
            ),
        )

    def test_specific_sentence_and_detail(self) -> None:
        """A message of the caller replaces the default one; detail fields follow it, and a
        detail that is None is left out."""
        answer = render_error(ErrorKind.TOO_LONG, "email is too long.", field="email")
        self.assertEqual(
            answer.body, b'{"error": "too_long", "message": "email is too long.", "field": "email"}'
        )
        unknown_field = render_error(ErrorKind.TOO_LONG, "Long.", field=None)
        self.assertEqual(set(json.loads(unknown_field.body)), {"error", "message"})

    def test_503_carries_retry_after(self) -> None:
        """A 503 answer tells the client, in Retry-After, how many seconds to wait."""
        answer = render_error(ErrorKind.OVERLOADED)
        self.assertEqual(
            answer.headers,
            (
                (b"Content-Type", b"application/json"),
                (b"Retry-After", str(RETRY_AFTER_SECONDS).encode("ascii")),
            ),
        )

    def test_body_is_ascii_json_whatever_the_message(self) -> None:
        """A message with any characters, lone surrogates included, still gives ASCII JSON that
        reads back as the same message."""
        message = "caf\u00e9 \ud800 \x00."
        body = render_error(ErrorKind.INVALID_VALUE, message).body
        self.assertTrue(body.isascii())
        self.assertEqual(json.loads(body)["message"], message)


class WriteErrorTests(SynchronousTestCase):
    def test_sets_the_answer_on_the_request_and_counts_it(self) -> None:
        """write_error sets the status and headers render_error gives, returns its body and
        adds one to the error counter under the code."""
        request = DummyRequest([b"users"])
        before = errors_counted("database_unavailable")
        body = write_error(cast(IRequest, request), ErrorKind.DATABASE_UNAVAILABLE, "Not now.")
        answer = render_error(ErrorKind.DATABASE_UNAVAILABLE, "Not now.")
        self.assertEqual(body, answer.body)
        self.assertEqual(request.responseCode, 503)
        for name, value in answer.headers:
            self.assertEqual(request.responseHeaders.getRawHeaders(name), [value])
        self.assertEqual(errors_counted("database_unavailable"), before + 1)


class RawAnswerTests(SynchronousTestCase):
    def test_raw_answer_is_the_rendered_one_framed_by_hand(self) -> None:
        """A raw answer is the status line with the reason phrase, Content-Type, Content-Length,
        the other headers, Connection: close, then the rendered body."""
        answer = render_error(ErrorKind.TOO_MANY_CONNECTIONS)
        self.assertEqual(
            raw_error(ErrorKind.TOO_MANY_CONNECTIONS),
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n"
            b"Retry-After: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(answer.body), RETRY_AFTER_SECONDS, answer.body),
        )
        self.assertEqual(TOO_MANY_CONNECTIONS, raw_error(ErrorKind.TOO_MANY_CONNECTIONS))

    def test_answers_written_by_hand(self) -> None:
        """The 413, 400 and 408 the site writes to the socket, byte for byte."""
        self.assertEqual(
            TOO_LARGE,
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: 106\r\nConnection: close\r\n\r\n"
            b'{"error": "body_too_large", "message": "The request body is larger than the 16 KiB'
            b' this service accepts."}',
        )
        self.assertEqual(
            BAD_REQUEST,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: 110\r\nConnection: close\r\n\r\n"
            b'{"error": "malformed_http", "message": "The request is not valid HTTP (a malformed'
            b' header, length or chunk)."}',
        )
        self.assertEqual(
            request_timeout_answer(2.5),
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Content-Length: 115\r\nConnection: close\r\n\r\n"
            b'{"error": "request_timeout", "message": "The request did not arrive completely'
            b' within 2.5 seconds; send it again."}',
        )

    def test_answers_to_an_oversized_head(self) -> None:
        """The 414 and 431 the site writes to the socket carry RFC 9110's and RFC 6585's reason
        phrases, a Content-Length that is the body's, and a sentence naming the limits."""
        for raw, status, code in (
            (URI_TOO_LONG, b"414 URI Too Long", "uri_too_long"),
            (HEADERS_TOO_LARGE, b"431 Request Header Fields Too Large", "headers_too_large"),
        ):
            head, _, body = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            self.assertEqual(lines[0], b"HTTP/1.1 " + status)
            self.assertEqual(
                lines[1:],
                [
                    b"Content-Type: application/json",
                    b"Content-Length: %d" % len(body),
                    b"Connection: close",
                ],
            )
            self.assertEqual(json.loads(body)["error"], code)
        self.assertIn(f"{MAX_REQUEST_LINE_BYTES // 1024} KiB", ErrorKind.URI_TOO_LONG.message)
        for limit in (f"{MAX_HEADERS} headers", f"{MAX_HEADER_BYTES // 1024} KiB in all"):
            self.assertIn(limit, ErrorKind.HEADERS_TOO_LARGE.message)
