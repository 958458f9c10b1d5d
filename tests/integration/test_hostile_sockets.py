"""Hostile heads and the framing of answers end to end: raw bytes over real sockets on
127.0.0.1 to a squad on the real database (``start_squad``), as a client sees them."""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from squad.http.fields import MAX_REQUEST_LINE_BYTES
from tests.integration.test_slow_clients import answer_of, connect
from tests.support import RunningSquad, start_squad


async def exchange(squad: RunningSquad, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything received until the server closes."""
    client = await connect(squad)
    assert client.transport is not None
    client.transport.write(request)
    received: bytes = await client.closed
    return received


class HostileHeadTests(TestCase):
    timeout = 60

    async def test_an_over_long_head_gets_its_json_answer_before_the_close(self) -> None:
        """A 70 KB and a 1 MB request line get the JSON 414 and a closed connection, headers
        of 40 KB in all the JSON 431: the client reads the whole answer, even though the server
        closes with most of the request unread."""
        squad = await start_squad(self)
        for size in (70_000, 1_000_000):
            received = await exchange(squad, b"GET /" + b"a" * size + b" HTTP/1.1\r\n\r\n")
            status, headers, body = answer_of(received)
            self.assertEqual((status, body["error"]), (414, "uri_too_long"), size)
            self.assertEqual(headers["connection"], "close")
            self.assertIn(f"{MAX_REQUEST_LINE_BYTES // 1024} KiB", body["message"])
        big_headers = b"".join(b"X-H%d: %s\r\n" % (n, b"h" * 1000) for n in range(40))
        received = await exchange(squad, b"GET /health HTTP/1.1\r\n" + big_headers + b"\r\n")
        status, _, body = answer_of(received)
        self.assertEqual((status, body["error"]), (431, "headers_too_large"))

    async def test_answers_have_a_content_length_and_name_no_server(self) -> None:
        """Over a real socket, GET /openapi.json and a refused sign-up (a right-to-left
        override in firstName: 400 invalid_characters) are framed by Content-Length, not
        chunked, and carry no Server header."""
        squad = await start_squad(self)
        signup = json.dumps(
            {
                "firstName": "Ada\u202eecalevoL",
                "lastName": "Lovelace",
                "email": "ada@example.com",
                "username": "ada_lovelace",
                "password": "correct horse battery staple",
            }
        ).encode("utf-8")
        requests = [
            b"GET /openapi.json HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
            b"POST /users HTTP/1.1\r\nHost: s\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(signup), signup),
        ]
        answers = []
        for request in requests:
            received = await exchange(squad, request)
            head, _, content = received.partition(b"\r\n\r\n")
            names = {line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]}
            self.assertNotIn(b"transfer-encoding", names)
            self.assertNotIn(b"server", names)
            status, headers, body = answer_of(received)
            self.assertEqual(int(headers["content-length"]), len(content))
            answers.append((status, body))
        self.assertEqual(answers[0][0], 200)
        self.assertEqual(answers[1][0], 400)
        self.assertEqual(
            (answers[1][1]["error"], answers[1][1]["field"]), ("invalid_characters", "firstName")
        )
