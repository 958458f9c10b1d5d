"""The HTTP server around the Klein routes: body limits, timeouts, connection cap, no
per-request logging.

twisted.web buffers every request body whole before a route runs and has no size limit
(https://github.com/twisted/twisted/issues/4898,
https://github.com/twisted/twisted/issues/10191). ``LimitedRequest`` refuses a body over the
limit while it arrives: from ``Content-Length`` before reading any of it, or by counting a
chunked body, answering 413 and closing the connection, so a client cannot make a worker hold
a huge body.

Twisted's only timeout is an idle one, reset by every byte received: a client that sends one
byte every few seconds (slowloris) would hold a connection and a request forever. ``SquadSite``
gives each request a total deadline for its headers and body (``REQUEST_DEADLINE_SECONDS``),
answered with a JSON 408 and a closed connection. One timer per request would cost real CPU at
thousands of requests a second (``squad.http.deadlines`` explains), so instead one coarse sweep per
site looks at the open connections and notes when it first saw each one receiving a request:
nothing is done per request, and a late request is caught between the deadline and the
deadline plus one sweep. Keep-alive connections idle between requests stay under the idle
timeout.

``SquadSite`` also caps the connections one worker holds open (``MAX_CONNECTIONS``): past the
cap a new connection gets a fast 503 with ``Retry-After`` and is closed, without being read.

The head of a request is limited as ``HTTPChannel`` always limited it, but answered: Twisted
closes a connection whose request line or header line is too long without a word, and answers
too many or too large headers with an empty 400. ``SquadChannel`` answers a JSON 414 or 431
instead, and its refusal of malformed HTTP is the API's JSON 400.

Every answer a route gives is framed with ``Content-Length`` (twisted.web would chunk an HTTP/1.1
answer whose length it was not told) and names no server: twisted.web adds
``Server: TwistedWeb/<version>`` to each, which tells an attacker which vulnerabilities to try.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from io import BytesIO
from typing import Any, Final

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from squad.http.deadlines import MAX_CONNECTIONS, REQUEST_DEADLINE_SECONDS
from squad.http.errors import ErrorKind, count_error, render_error
from squad.http.fields import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE_BYTES,
)
from squad.http.routes import route_of
from squad.metrics import SquadMetrics, method_label

__all__ = [
    "MAX_CONNECTIONS",
    "REQUEST_DEADLINE_SECONDS",
    "LimitedRequest",
    "SquadChannel",
    "SquadSite",
    "fit_connection_cap",
    "raw_error",
]

log = Logger()

# Connections idle this long between requests (keep-alive) are closed; every byte received
# starts it again, so it alone does not stop a client that trickles a request.
IDLE_TIMEOUT_SECONDS = 30

# Past the cap, connections that may wait for their 503 to be read; new ones beyond it are closed
# at once, without an answer, so a flood cannot use up the file descriptors.
MAX_REFUSING = 1_000

# File descriptors a worker needs besides its HTTP connections (database pools, logs, pipes).
_OTHER_DESCRIPTORS = 256


# RFC 9110's reason phrases for the statuses written by hand (Twisted's table has older ones).
_REASONS: Final = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def raw_error(kind: ErrorKind, message: str | None = None) -> bytes:
    """A whole HTTP/1.1 error answer, from status line to body, for writing straight to the
    socket of a connection that is closed after it."""
    answer = render_error(kind, message)
    content_type, *others = answer.headers
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (answer.status, _REASONS[answer.status]),
            b"%s: %s\r\n" % content_type,
            b"Content-Length: %d\r\n" % len(answer.body),
            *(b"%s: %s\r\n" % header for header in others),
            b"Connection: close\r\n\r\n",
            answer.body,
        ]
    )


def request_timeout_answer(seconds: float) -> bytes:
    """The 408 sent to a client that did not send its whole request within ``seconds``."""
    return raw_error(
        ErrorKind.REQUEST_TIMEOUT,
        f"The request did not arrive completely within {seconds:g} seconds; send it again.",
    )


TOO_MANY_CONNECTIONS: Final = raw_error(ErrorKind.TOO_MANY_CONNECTIONS)
BAD_REQUEST: Final = raw_error(ErrorKind.MALFORMED_HTTP)
TOO_LARGE: Final = raw_error(ErrorKind.BODY_TOO_LARGE)
URI_TOO_LONG: Final = raw_error(ErrorKind.URI_TOO_LONG)
HEADERS_TOO_LARGE: Final = raw_error(ErrorKind.HEADERS_TOO_LARGE)
# What SquadChannel answers to a request whose head it refuses.
_HEAD_REFUSALS: Final = {
    ErrorKind.MALFORMED_HTTP: BAD_REQUEST,
    ErrorKind.URI_TOO_LONG: URI_TOO_LONG,
    ErrorKind.HEADERS_TOO_LARGE: HEADERS_TOO_LARGE,
}


class LimitedRequest(Request):
    """A request whose body may not exceed ``MAX_BODY_BYTES``, and whose answer is written whole
    when it finishes: with its ``Content-Length`` and without a ``Server`` header."""

    _refused = False
    _received = 0
    received_at = 0.0
    content: BytesIO
    # The answer's body, held until finish() (squad's answers are small and written at once).
    _unsent = b""

    def write(self, data: bytes) -> None:
        if self.startedWriting or self.finished or self._disconnected:
            super().write(data)  # lets Twisted raise or drop as it would
            return
        self._unsent = self._unsent + data if self._unsent else data

    def finish(self) -> None:
        if not (self.startedWriting or self.finished or self._disconnected):
            body, self._unsent = self._unsent, b""
            headers = self.responseHeaders
            headers.removeHeader(b"server")
            # RFC 9110 forbids a Content-Length on 1xx and 204 answers; a length already set (a
            # HEAD answer's) stays; an encoder (none is used) would change the length.
            if not (
                self.code in NO_BODY_CODES
                or self._encoder is not None
                or headers.hasHeader(b"content-length")
            ):
                headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
            super().write(body)
        super().finish()

    def gotLength(self, length: int | None) -> None:
        # Small bodies only: keep them in memory (the default spills to a temp file).
        self.content = BytesIO()
        if length is not None and length > MAX_BODY_BYTES:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY_BYTES:
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        factory = getattr(self.channel, "site", None)
        self.received_at = factory.reactor.seconds() if factory is not None else 0.0
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        self.content = BytesIO()
        # Otherwise Twisted answers "100 Continue" after our 413 to a client that asked.
        self.requestHeaders.removeHeader(b"expect")
        transport = self.channel.transport if self.channel is not None else None
        if transport is not None:
            transport.write(TOO_LARGE)
            transport.loseConnection()


def fit_connection_cap(
    cap: int,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """The connection cap this process can honour: raises the soft limit of open files to fit
    ``cap`` when the hard limit allows, else lowers the cap to what fits (and says so).

    Past its file-descriptor limit a worker could not even accept a connection to refuse it.
    """
    needed = cap + MAX_REFUSING + _OTHER_DESCRIPTORS
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return cap
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    fitting = max(1, soft - MAX_REFUSING - _OTHER_DESCRIPTORS)
    if fitting < cap:
        log.warn(
            "Only {fitting} connections per worker fit the open-file limit of {soft} "
            "(ulimit -n); --max-connections {cap} is lowered to that",
            fitting=fitting,
            soft=soft,
            cap=cap,
        )
        return fitting
    return cap


class SquadChannel(HTTPChannel):
    """An ``HTTPChannel`` that its site can watch (open connections, and requests that take
    too long to arrive) and whose every refusal is the API's JSON error."""

    site: SquadSite
    MAX_LENGTH = MAX_REQUEST_LINE_BYTES
    totalHeadersSize = MAX_HEADER_BYTES
    maxHeaders = MAX_HEADERS
    refused = False
    # Set by the site's sweep: when it first saw this connection receiving a request, and
    # which request (None while only part of its first line has arrived).
    receiving_since: float | None = None
    receiving_request: object = None
    timed_out = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        # After a refusal nothing more is parsed: a pipelined request must not be served.
        if not self.refused:
            super().dataReceived(data)

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        # A stopping worker closes each connection after its answer, and says so in it, so
        # that the client sends its next request on a new connection, to another worker.
        if not self.site.keep_alive:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))

    def receiving(self) -> bool:
        """Whether part of a request (its first line, headers or body) has arrived, and not yet
        all of it. Reads ``HTTPChannel``'s state; tests pin it for the Twisted version used."""
        if self._handlingRequest:
            return False  # the request arrived whole; later bytes wait in a buffer
        return bool(self.requests or self._buffer)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's own refusal of malformed HTTP, and of too many or too large headers, is an
        # empty 400; its counters say which it is.
        too_large = (
            self._receivedHeaderSize > self.totalHeadersSize
            or self._receivedHeaderCount > self.maxHeaders
        )
        self._refuse(ErrorKind.HEADERS_TOO_LARGE if too_large else ErrorKind.MALFORMED_HTTP)

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver's default closes the connection without a word. A request is created on
        # its first line, so with none receiving, the line that is too long is the first.
        self._refuse(ErrorKind.HEADERS_TOO_LARGE if self.requests else ErrorKind.URI_TOO_LONG)

    def _refuse(self, kind: ErrorKind) -> None:
        self.refused = True
        count_error(kind)
        transport: Any = self.transport
        transport.write(_HEAD_REFUSALS[kind])
        self.loseConnection()

    def request_too_slow(self, answer: bytes) -> None:
        """Answer 408 and close; a connection still open at the next sweep is aborted (the
        client does not read, or an answer was already sent and it keeps sending)."""
        transport: Any = self.transport
        if self.timed_out or transport.disconnecting:
            transport.abortConnection()
            return
        self.timed_out = True
        transport.write(answer)
        self.loseConnection()


class _ConnectionRefusal(Protocol):
    """Past the cap: a 503 right away, then the connection is closed without reading a request.

    Only the sending side is shut at once: closing a socket with unread request bytes makes
    the kernel send a reset, which can destroy the 503 before the client reads it. The client
    closes after reading the answer; the site's sweep closes the ones that do not.
    """

    def __init__(self, site: SquadSite) -> None:
        self.site = site
        self.since = site.reactor.seconds()

    def connectionMade(self) -> None:
        self.site.refusing.add(self)
        transport: Any = self.transport
        transport.write(TOO_MANY_CONNECTIONS)
        close_writing = getattr(transport, "loseWriteConnection", None)
        if close_writing is not None:
            close_writing()
        else:
            transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """The request is not read."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.refusing.discard(self)


class SquadSite(Site):
    """A ``Site`` with squad's request type, request deadlines, a connection cap and no access
    log.

    Writing an access log line costs real CPU at thousands of requests per second; request
    counts and latencies are in ``/metrics`` instead. The sweep runs while the site listens
    (from ``startFactory`` to ``stopFactory``).
    """

    # Its start and stop say nothing the start-up line does not already say.
    noisy = False

    # Twisted's default wraps the channel in a protocol that could switch to HTTP/2 after TLS
    # negotiation; squad serves plain HTTP/1.1, so the channel is the protocol.
    protocol = SquadChannel  # type: ignore[assignment]
    requestFactory = LimitedRequest
    displayTracebacks = False
    #: False once the worker stops: answers then close their connection.
    keep_alive = True

    def __init__(
        self,
        resource: IResource,
        metrics: SquadMetrics | None = None,
        *,
        request_deadline: float = REQUEST_DEADLINE_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        max_refusing: int = MAX_REFUSING,
        **kwargs: Any,
    ) -> None:
        self.metrics = metrics
        self._request_counters: dict[tuple[str, str, int], Any] = {}
        self._route_latencies: dict[str, Any] = {}
        kwargs.setdefault("timeout", IDLE_TIMEOUT_SECONDS)
        super().__init__(resource, **kwargs)
        # squad reads JSON bodies only; parsing form posts would answer bad ones with a bare 400.
        self._parsePOSTFormSubmission = False
        self.request_deadline = request_deadline
        self.max_connections = max_connections
        self.max_refusing = max_refusing
        self.channels: set[SquadChannel] = set()
        self.refusing: set[_ConnectionRefusal] = set()
        self._timeout_answer = request_timeout_answer(request_deadline)
        # A tenth of the deadline, at most a second: a late request is caught at most that much
        # after its deadline, and a sweep stays rare next to the requests it watches.
        self.sweep_interval = min(1.0, request_deadline / 10)
        self._sweeper = LoopingCall(self.sweep)
        clock: IReactorTime = self.reactor
        self._sweeper.clock = clock

    def startFactory(self) -> None:
        super().startFactory()
        if not self._sweeper.running:
            self._sweeper.start(self.sweep_interval, now=False)

    def stopFactory(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()
        super().stopFactory()

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.channels) >= self.max_connections:
            if self.metrics is not None:
                self.metrics.refused_connections.inc()
            if len(self.refusing) >= self.max_refusing:
                return None  # closed at once: refusals themselves must not use up the fds
            return _ConnectionRefusal(self)
        return super().buildProtocol(addr)

    def sweep(self) -> None:
        """Answer 408 to connections receiving one request for longer than the deadline; close
        refused connections whose client did not close within the deadline."""
        now = self.reactor.seconds()
        deadline = self.request_deadline
        late: list[SquadChannel] = []
        for channel in self.channels:
            if not channel.receiving():
                channel.receiving_since = None
                continue
            current = channel.requests[-1] if channel.requests else None
            since = channel.receiving_since
            previous = channel.receiving_request
            channel.receiving_request = current
            # A different request than last time: the earlier one arrived, a new one began.
            if since is None or (previous is not None and current is not previous):
                channel.receiving_since = now
            elif now - since >= deadline:
                late.append(channel)
        for channel in late:
            if self.metrics is not None and not channel.timed_out:
                self.metrics.request_timeouts.inc()
            channel.request_too_slow(self._timeout_answer)
        for refusal in [r for r in self.refusing if now - r.since >= deadline]:
            refusal.transport.abortConnection()  # type: ignore[union-attr]
            self.refusing.discard(refusal)
        if self.metrics is not None:
            self.metrics.open_connections.set(len(self.channels))

    def log(self, request: Any) -> None:
        # No access log line (CPU at thousands of requests a second): a metric sample instead.
        if self.metrics is None:
            return
        route = route_of(request.path)
        # prometheus_client's labels() validates and locks on every call, so each child is looked
        # up once (bounded: methods, routes and status codes each come from a short list).
        key = (method_label(request.method), route, request.code)
        counted = self._request_counters.get(key)
        if counted is None:
            counted = self.metrics.requests.labels(key[0], route, str(request.code))
            self._request_counters[key] = counted
        counted.inc()
        started = getattr(request, "received_at", 0.0)
        if started:
            timed = self._route_latencies.get(route)
            if timed is None:
                timed = self._route_latencies[route] = self.metrics.latency.labels(route)
            timed.observe(self.reactor.seconds() - started)
