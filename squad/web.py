"""The HTTP server around the Klein routes: body limits, timeouts, no per-request logging.

twisted.web buffers every request body whole before a route runs and has no size limit
(Twisted issues 4898, 10191). ``LimitedRequest`` refuses a body over the limit while it
arrives: from ``Content-Length`` before reading any of it, or by counting a chunked body,
answering 413 and closing the connection, so a client cannot make a worker hold a huge body.
"""

from __future__ import annotations

import json
from functools import partial
from io import BytesIO
from typing import Any

from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from squad.metrics import SquadMetrics, route_of
from squad.validation import MAX_BODY_BYTES

__all__ = ["LimitedRequest", "SquadSite"]

# Connections idle this long (keep-alive or a client trickling a request) are closed.
IDLE_TIMEOUT_SECONDS = 30


def _raw_error(status: int, reason: bytes, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            body,
        ]
    )


BAD_REQUEST = _raw_error(
    400,
    b"Bad Request",
    "malformed_http",
    "The request is not valid HTTP (a malformed header, length or chunk).",
)

TOO_LARGE = _raw_error(
    413,
    b"Payload Too Large",
    "body_too_large",
    f"The request body is larger than the {MAX_BODY_BYTES // 1024} KiB this service accepts.",
)


class LimitedRequest(Request):
    """A request whose body may not exceed ``MAX_BODY_BYTES``."""

    _refused = False
    _received = 0
    received_at = 0.0
    content: BytesIO

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


def _refuse_malformed(channel: Any) -> None:
    channel.transport.write(BAD_REQUEST)
    channel.loseConnection()


class SquadSite(Site):
    """A ``Site`` with squad's request type, an idle timeout and no access log.

    Writing an access log line costs real CPU at thousands of requests per second; request
    counts and latencies are in ``/metrics`` instead.
    """

    requestFactory = LimitedRequest
    displayTracebacks = False

    def __init__(
        self, resource: IResource, metrics: SquadMetrics | None = None, **kwargs: Any
    ) -> None:
        self.metrics = metrics
        kwargs.setdefault("timeout", IDLE_TIMEOUT_SECONDS)
        super().__init__(resource, **kwargs)
        # squad reads JSON bodies only; parsing form posts would answer bad ones with a bare 400.
        self._parsePOSTFormSubmission = False

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        channel = getattr(protocol, "_channel", None)
        if channel is not None:
            # Twisted's own refusal of malformed HTTP is an empty 400; the contract wants JSON.
            channel._respondToBadRequestAndDisconnect = partial(_refuse_malformed, channel)
        return protocol

    def log(self, request: Any) -> None:
        # No access log line (CPU at thousands of requests a second): a metric sample instead.
        if self.metrics is None:
            return
        route = route_of(request.path)
        self.metrics.requests.labels(
            request.method.decode("ascii", "replace"), route, str(request.code)
        ).inc()
        started = getattr(request, "received_at", 0.0)
        if started:
            self.metrics.latency.labels(route).observe(self.reactor.seconds() - started)
