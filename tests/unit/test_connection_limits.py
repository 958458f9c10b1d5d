"""Slow clients and too many connections, in memory: ``SquadSite``'s request deadline (a JSON
408 for a request that trickles in) and its connection cap (a fast JSON 503), driven by a
``Clock`` over ``StringTransport`` connections through Twisted's real HTTP parser.
"""

from __future__ import annotations

import json
import resource
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from squad.http.site import (
    MAX_CONNECTIONS,
    REQUEST_DEADLINE_SECONDS,
    SquadChannel,
    SquadSite,
    fit_connection_cap,
)

HEAD = b"POST /users HTTP/1.1\r\nHost: squad.test\r\nContent-Type: application/json\r\n"
BODY = b'{"firstName": "Ada"}'
REQUEST = HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY


class Answerer(Resource):
    """Answers every POST at once with 201 and counts them."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0

    def render_POST(self, request: Request) -> bytes:
        self.answered += 1
        request.setResponseCode(201)
        return b"{}"


class CountingTransport(StringTransport):
    """A ``StringTransport`` that remembers being aborted and half-closed."""

    aborted = False
    write_closed = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def answer_of(data: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and JSON body of the one answer in ``data``."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


class SiteTestCase(SynchronousTestCase):
    def make_site(self, **kwargs: Any) -> tuple[SquadSite, Clock, Answerer]:
        clock = Clock()
        app = Answerer()
        site = SquadSite(app, reactor=clock, **kwargs)
        site.doStart()
        self.addCleanup(site.doStop)
        return site, clock, app

    def connect(self, site: SquadSite, port: int = 50000) -> tuple[Any, CountingTransport]:
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        transport = CountingTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def close(self, protocol: Any) -> None:
        protocol.connectionLost(Failure(ConnectionDone()))

    def trickle(self, clock: Clock, protocol: Any, data: bytes, every: float) -> None:
        for index in range(len(data)):
            protocol.dataReceived(data[index : index + 1])
            clock.advance(every)


class RequestDeadlineTests(SiteTestCase):
    def assert_timed_out(self, transport: CountingTransport) -> None:
        status, headers, body = answer_of(transport.value())
        self.assertEqual(status, 408)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(body["error"], "request_timeout")
        self.assertIn("10 seconds", body["message"])
        self.assertTrue(transport.disconnecting)

    def test_defaults(self) -> None:
        """A request has 10 s to arrive whole, swept every second; 10,000 connections each."""
        site, _, _ = self.make_site()
        self.assertEqual((site.request_deadline, site.sweep_interval), (10.0, 1.0))
        self.assertEqual(REQUEST_DEADLINE_SECONDS, 10.0)
        self.assertEqual(site.max_connections, MAX_CONNECTIONS)
        self.assertEqual(MAX_CONNECTIONS, 10_000)

    def test_trickled_headers_get_408(self) -> None:
        """Headers sent a byte every 0.5 s (each byte resets the idle timeout) are answered 408
        and the connection closed between 10 and 11 s after they began, never earlier."""
        site, clock, app = self.make_site()
        protocol, transport = self.connect(site)
        self.trickle(clock, protocol, HEAD[:19], 0.5)  # 9.5 s in
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        for _ in range(4):
            self.trickle(clock, protocol, b"X", 0.5)
        self.assert_timed_out(transport)
        self.assertEqual(app.answered, 0)

    def test_trickled_first_line_gets_408(self) -> None:
        """A first line that never ends (only part of it arrives) also gets the 408."""
        site, clock, _ = self.make_site()
        protocol, transport = self.connect(site)
        protocol.dataReceived(b"POST /us")
        clock.pump([1.0] * 10)
        self.assertEqual(transport.value(), b"")
        clock.advance(1.0)
        self.assert_timed_out(transport)

    def test_trickled_body_gets_408(self) -> None:
        """Whole headers and then a body trickled in one byte a second: 408, nothing handled."""
        site, clock, app = self.make_site()
        protocol, transport = self.connect(site)
        protocol.dataReceived(HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY))
        self.trickle(clock, protocol, BODY[:12], 1.0)
        self.assert_timed_out(transport)
        self.assertEqual(app.answered, 0)

    def test_slow_but_in_time_is_served(self) -> None:
        """A request that takes 8 s to arrive is answered normally."""
        site, clock, app = self.make_site()
        protocol, transport = self.connect(site)
        self.trickle(clock, protocol, REQUEST[:-1], 8.0 / len(REQUEST))
        protocol.dataReceived(REQUEST[-1:])
        self.assertEqual(app.answered, 1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 201"))
        clock.advance(5.0)
        self.assertFalse(transport.disconnecting)

    def test_deadline_is_per_request_not_per_connection(self) -> None:
        """On a keep-alive connection, twenty requests that each arrive in two parts across a
        sweep (so the sweep always sees one arriving) are all served: each has its own
        deadline."""
        site, clock, app = self.make_site()
        protocol, transport = self.connect(site)
        half = len(HEAD) // 2
        for _ in range(20):
            protocol.dataReceived(REQUEST[:half])
            clock.advance(1.0)
            protocol.dataReceived(REQUEST[half:])
        self.assertEqual(app.answered, 20)
        self.assertNotIn(b"408", transport.value())
        self.assertFalse(transport.disconnecting)

    def test_idle_keep_alive_is_left_to_the_idle_timeout(self) -> None:
        """A keep-alive connection idle after its answer gets no 408; Twisted's 30 s idle
        timeout closes it, not earlier."""
        site, clock, app = self.make_site()
        protocol, transport = self.connect(site)
        protocol.dataReceived(REQUEST)
        self.assertEqual(app.answered, 1)
        clock.pump([1.0] * 29)
        self.assertFalse(transport.disconnecting)
        clock.pump([1.0] * 2)
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"408", transport.value())

    def test_a_request_being_handled_is_not_timed_out(self) -> None:
        """The deadline covers receiving only: a request whose answer takes long is not 408."""
        site, clock, _ = self.make_site()
        protocol, transport = self.connect(site)
        pending: list[Request] = []

        class Slow(Resource):
            isLeaf = True

            def render_POST(self, request: Request) -> Any:
                pending.append(request)
                from twisted.web.server import NOT_DONE_YET

                return NOT_DONE_YET

        site.resource = Slow()
        protocol.dataReceived(REQUEST + HEAD[:10])  # and a pipelined one begins
        clock.pump([1.0] * 20)
        self.assertEqual(transport.value(), b"")
        pending[0].setResponseCode(201)
        pending[0].finish()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 201"))
        self.assertFalse(transport.disconnecting)

    def test_client_not_reading_is_aborted(self) -> None:
        """A connection still open one sweep after its 408 (the client does not read) is
        aborted, as is one that keeps sending after another refusal (a 413) closed it."""
        site, clock, _ = self.make_site()
        protocol, transport = self.connect(site)
        protocol.dataReceived(b"POST /")
        clock.pump([1.0] * 11)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        clock.advance(1.0)
        self.assertTrue(transport.aborted)

        other, other_transport = self.connect(site, 50001)
        other.dataReceived(HEAD + b"Content-Length: 99999999\r\n\r\n")
        self.assertTrue(other_transport.value().startswith(b"HTTP/1.1 413"))
        clock.pump([1.0] * 11)
        self.assertTrue(other_transport.aborted)
        self.assertNotIn(b"408", other_transport.value())

    def test_lower_deadline_sweeps_faster(self) -> None:
        """A 1 s deadline is swept every 0.1 s and says so in its answer."""
        site, clock, _ = self.make_site(request_deadline=1.0)
        self.assertEqual(site.sweep_interval, 0.1)
        protocol, transport = self.connect(site)
        protocol.dataReceived(b"POST /")
        clock.pump([0.1] * 10)
        self.assertEqual(transport.value(), b"")
        clock.pump([0.1] * 2)
        self.assertEqual(answer_of(transport.value())[0], 408)
        self.assertIn("1 seconds", answer_of(transport.value())[2]["message"])

    def test_sweep_runs_only_while_listening(self) -> None:
        """The sweep starts with the site's first port and stops with its last: no timer is
        left behind."""
        clock = Clock()
        site = SquadSite(Answerer(), reactor=clock)
        site.doStart()
        self.assertTrue(site._sweeper.running)
        site.doStop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closed_connections_are_forgotten(self) -> None:
        """The site tracks open channels only."""
        site, _, _ = self.make_site()
        protocol, _ = self.connect(site)
        self.assertIsInstance(protocol, SquadChannel)
        self.assertEqual(site.channels, {protocol})
        self.close(protocol)
        self.assertEqual(site.channels, set())


class ConnectionCapTests(SiteTestCase):
    def test_past_the_cap_a_fast_503(self) -> None:
        """With the cap reached, a new connection is answered 503 JSON with Retry-After at
        once, its sending side closed, and nothing it sends is read."""
        site, _, app = self.make_site(max_connections=2)
        self.connect(site, 50000)
        self.connect(site, 50001)
        refused, transport = self.connect(site, 50002)
        status, headers, body = answer_of(transport.value())
        self.assertEqual(status, 503)
        self.assertEqual(headers["retry-after"], "1")
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(body["error"], "too_many_connections")
        self.assertTrue(transport.write_closed)
        refused.dataReceived(REQUEST)
        self.assertEqual(app.answered, 0)
        self.assertEqual(len(site.channels), 2)

    def test_room_again_after_a_close(self) -> None:
        """Once a connection closes, the next one is served normally."""
        site, _, app = self.make_site(max_connections=1)
        first, _ = self.connect(site, 50000)
        self.close(first)
        protocol, transport = self.connect(site, 50001)
        protocol.dataReceived(REQUEST)
        self.assertEqual(app.answered, 1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 201"))

    def test_refused_connections_are_closed_by_the_sweep(self) -> None:
        """A refused client that never closes is aborted after the request deadline."""
        site, clock, _ = self.make_site(max_connections=1)
        self.connect(site, 50000)
        refused, transport = self.connect(site, 50001)
        self.assertEqual(len(site.refusing), 1)
        clock.pump([1.0] * 9)
        self.assertFalse(transport.aborted)
        clock.pump([1.0] * 2)
        self.assertTrue(transport.aborted)
        self.assertEqual(site.refusing, set())
        refused.connectionLost(Failure(ConnectionDone()))  # after the abort: harmless

    def test_refusals_are_bounded(self) -> None:
        """Past ``max_refusing`` refusals in flight, new connections are closed without an
        answer (no protocol), so a flood cannot use up the file descriptors."""
        site, _, _ = self.make_site(max_connections=1, max_refusing=2)
        self.connect(site, 50000)
        self.connect(site, 50001)
        self.connect(site, 50002)
        self.assertIsNone(site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50003)))
        refusal = next(iter(site.refusing))
        refusal.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50004)))


class FitConnectionCapTests(SynchronousTestCase):
    def limits(
        self, soft: int, hard: int, *, can_raise: bool = True
    ) -> tuple[Any, Any, list[tuple[int, int]]]:
        calls: list[tuple[int, int]] = []

        def getrlimit(which: int) -> tuple[int, int]:
            self.assertEqual(which, resource.RLIMIT_NOFILE)
            return soft, hard

        def setrlimit(which: int, limits: tuple[int, int]) -> None:
            if not can_raise:
                raise ValueError("not allowed")
            calls.append(limits)

        return getrlimit, setrlimit, calls

    def test_enough_already(self) -> None:
        """A soft limit that fits the cap is left alone."""
        getrlimit, setrlimit, calls = self.limits(65536, 65536)
        self.assertEqual(fit_connection_cap(10_000, getrlimit, setrlimit), 10_000)
        self.assertEqual(calls, [])

    def test_soft_limit_raised(self) -> None:
        """A low soft limit is raised to fit the cap, refusals and other files."""
        getrlimit, setrlimit, calls = self.limits(1024, 1_048_576)
        self.assertEqual(fit_connection_cap(10_000, getrlimit, setrlimit), 10_000)
        self.assertEqual(calls, [(11_256, 1_048_576)])

    def test_cap_lowered_to_the_hard_limit(self) -> None:
        """When even the hard limit is too low, the cap is lowered to what fits."""
        getrlimit, setrlimit, calls = self.limits(1024, 4096)
        self.assertEqual(fit_connection_cap(10_000, getrlimit, setrlimit), 4096 - 1256)
        self.assertEqual(calls, [(4096, 4096)])

    def test_cap_lowered_when_raising_is_refused(self) -> None:
        """When the limit cannot be raised, the cap fits the current one."""
        getrlimit, setrlimit, _ = self.limits(2048, 65536, can_raise=False)
        self.assertEqual(fit_connection_cap(10_000, getrlimit, setrlimit), 2048 - 1256)
