"""The HTTP steps around a run, as the original tool took them: GET /health, then
DELETE /collections."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

__all__ = ["ServiceDown", "check_health", "flush"]


class ServiceDown(Exception):
    """The service did not answer GET /health with a 2xx; the message says what happened."""


def _request(method: str, url: str, timeout: float) -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def check_health(base_url: str, timeout: float = 5.0) -> None:
    """Raise L{ServiceDown} unless ``GET <base_url>/health`` answers 2xx within C{timeout}."""
    url = base_url + "/health"
    try:
        status = _request("GET", url, timeout)
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise ServiceDown(
            f"the service at {base_url} does not answer ({reason}). Start it with ./bin/dev, "
            "or point URL at it (URL=http://host:port ./bin/benchmark)."
        ) from None
    if not 200 <= status < 300:
        raise ServiceDown(f"GET {url} answered {status}: the service is not healthy")


def flush(base_url: str, timeout: float = 120.0) -> str | None:
    """
    ``DELETE <base_url>/collections``, so the run starts from an empty collection. Returns None
    when it worked, else a warning for the person running the benchmark: a service without
    ``--allow-flush`` answers 404, and the run can still go on (the nothing-lost check counts
    only the users that the run added).
    """
    url = base_url + "/collections"
    try:
        status = _request("DELETE", url, timeout)
    except (OSError, http.client.HTTPException) as error:
        return f"DELETE {url} failed ({error}); the collection was not emptied"
    if 200 <= status < 300:
        return None
    if status == 404:
        return (
            f"DELETE {url} answered 404: the service runs without --allow-flush, so earlier "
            "users stay (the nothing-lost check counts only the users this run adds)"
        )
    return f"DELETE {url} answered {status}; the collection was not emptied"
