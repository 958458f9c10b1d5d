"""squad's ``GET /metrics`` read as plain figures: what the tools poll during and after a load."""

from __future__ import annotations

import urllib.request

__all__ = ["parse_metrics", "read_metrics"]


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text exposition, by name (labelled ones summed)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            samples[name] = samples.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return samples


def read_metrics(url: str, timeout: float = 2.0) -> dict[str, float] | None:
    """squad's samples from ``GET <url>/metrics`` by name; None when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as answer:
            return parse_metrics(answer.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
