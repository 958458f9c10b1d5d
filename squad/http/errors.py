"""The JSON error answers of the HTTP API: ``{"error", "message", ...}``."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

from squad.runtime.metrics import SquadMetrics

__all__ = ["RETRY_AFTER_SECONDS", "count_error", "write_error"]

# Mobile clients back off for this long before retrying a shed or failed write: long enough for
# a restarting database to come back, short enough that a person barely notices.
RETRY_AFTER_SECONDS = 1


def count_error(code: str) -> None:
    """Count one error answer by its machine code, so /metrics tells e.g. a bodyless sign-up
    (invalid_json) from an overload (overloaded); codes come from a fixed list in the code."""
    SquadMetrics.get().errors.labels(code).inc()


def write_error(request: IRequest, status: int, code: str, message: str, **detail: Any) -> bytes:
    """Set the status and headers of an error answer and return its JSON body."""
    count_error(code)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    if status == 503:
        request.setHeader(b"retry-after", str(RETRY_AFTER_SECONDS).encode("ascii"))
    return json.dumps({"error": code, "message": message, **detail}).encode("utf-8")
