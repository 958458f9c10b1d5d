"""Slow clients and the connection cap end to end: real sockets on 127.0.0.1 against a squad
process tree on the real database (``start_squad``), with real timers."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.support import RunningSquad, start_squad

HEAD = b"POST /users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


class RawClient(Protocol):
    """A TCP client that sends what it is told and records everything it receives;
    ``closed`` fires with those bytes when the connection ends."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self.closed_at: float | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed_at = reactor.seconds()
        self.closed.callback(self.received)


async def connect(squad: RunningSquad) -> RawClient:
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", squad.port), client)
    return client


def answer_of(data: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


class SlowClientTests(TestCase):
    timeout = 60

    async def test_trickled_request_gets_408_while_others_are_served(self) -> None:
        """With --request-timeout 1, a client trickling its headers a byte every 0.2 s (each
        byte would reset an idle timeout) gets the JSON 408 and a closed connection 1 to 1.2 s
        after its first byte (the deadline plus at most one 0.1 s sweep; up to 2 s allowed for
        a busy machine); meanwhile a normal POST on another connection gets 201."""
        squad = await start_squad(self, "--request-timeout", "1", "--slow-min", "0.1")
        client = await connect(squad)
        assert client.transport is not None
        remaining = iter(HEAD)
        started = reactor.seconds()

        def send_one() -> None:
            byte = next(remaining, None)
            if byte is not None and client.closed_at is None:
                client.transport.write(bytes([byte]))  # type: ignore[union-attr]

        trickle = LoopingCall(send_one)
        trickle.clock = reactor
        trickling = trickle.start(0.2, now=True)
        try:
            response = await squad.post_signup()
            self.assertEqual(response.code, 201)
            await response.content()
            received = await client.closed
        finally:
            trickle.stop()
            await trickling
        assert client.closed_at is not None
        elapsed = client.closed_at - started
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 2.0)
        status, headers, body = answer_of(received)
        self.assertEqual(status, 408)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(body["error"], "request_timeout")
        self.assertEqual(set(body), {"error", "message"})

    async def test_connection_cap(self) -> None:
        """With --max-connections 3 and three connections open, a fourth gets a fast JSON 503
        with Retry-After and is closed; once one closes, a POST is served again (201)."""
        squad = await start_squad(self, "--max-connections", "3", "--slow-min", "0.1")
        holders = [await connect(squad) for _ in range(3)]
        # The server counts a connection once it has accepted it: let it catch up.
        await deferLater(reactor, 0.1, lambda: None)
        refused = await connect(squad)
        assert refused.transport is not None
        refused.transport.write(HEAD + b"Content-Length: 2\r\n\r\n{}")
        started = reactor.seconds()
        received = await refused.closed
        self.assertLess(reactor.seconds() - started, 1.0)
        status, headers, body = answer_of(received)
        self.assertEqual(status, 503)
        self.assertEqual(headers["retry-after"], "1")
        self.assertEqual(body["error"], "too_many_connections")

        first = holders.pop()
        assert first.transport is not None
        first.transport.loseConnection()
        await first.closed
        await deferLater(reactor, 0.1, lambda: None)
        response = await squad.post_signup()
        self.assertEqual(response.code, 201)
        await response.content()
        for holder in holders:
            assert holder.transport is not None
            holder.transport.loseConnection()
            await holder.closed
