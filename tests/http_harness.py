"""An in-memory HTTP connection to any ``twisted.web`` site, from public Twisted and treq parts.

``treq.testing.StubTreq`` always builds a plain ``Site`` around a resource; squad's behaviour at
the edge (body limits, deadlines, JSON refusals) lives in its own ``SquadSite``. ``InMemorySite``
serves whichever site it is given: each connection is a client and a server protocol joined by
``twisted.test.iosim``'s fake transports on a ``MemoryReactorClock``, with a treq
``HTTPClient`` on top, so tests read like treq code and go through real HTTP parsing without a
socket.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IConsumer,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.web.client import Agent
from twisted.web.iweb import IBodyProducer
from twisted.web.server import Site
from zope.interface import implementer

__all__ = ["InMemorySite"]


@implementer(IStreamClientEndpoint)
class _ToSite:
    """Connects each new client protocol straight to a new protocol of the site."""

    def __init__(self, harness: InMemorySite) -> None:
        self._harness = harness

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        harness = self._harness
        harness.connections += 1
        client_address = IPv4Address("TCP", "127.0.0.1", 40000 + harness.connections)
        server_address = IPv4Address("TCP", "127.0.0.1", 80)
        client = factory.buildProtocol(server_address)
        server = harness.site.buildProtocol(client_address)
        assert client is not None and server is not None
        harness.pumps.append(
            connect(
                server,
                FakeTransport(
                    server, isServer=True, hostAddress=server_address, peerAddress=client_address
                ),
                client,
                FakeTransport(
                    client, isServer=False, hostAddress=client_address, peerAddress=server_address
                ),
                clock=harness.reactor,
            )
        )
        return succeed(client)


@implementer(IBodyProducer)
class _WholeBody:
    """A request body written at once (the default producer waits for the global reactor)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Endpoints:
    def __init__(self, harness: InMemorySite) -> None:
        self._harness = harness

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return _ToSite(self._harness)


class InMemorySite:
    """``client`` (a treq ``HTTPClient``) talks to ``site`` in memory; ``flush`` moves the
    bytes both ways until nothing is left to move."""

    def __init__(self, site: Site, reactor: MemoryReactorClock | None = None) -> None:
        self.reactor = reactor or MemoryReactorClock()
        self.site = site
        self.pumps: list[IOPump] = []
        self.connections = 0
        agent = Agent.usingEndpointFactory(self.reactor, _Endpoints(self))
        self.client = HTTPClient(agent, data_to_body_producer=_WholeBody)

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            for pump in list(self.pumps):
                if pump.pump():
                    moved = True

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        """A request through treq's client; call ``flush`` to have it answered."""
        answer: Deferred[Any] = self.client.request(method, url, **kwargs)
        self.flush()
        return answer

    def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
        return self.request("POST", url, **kwargs)
