"""The command line of ``./bin/benchmark`` and the environment it reads."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_DURATION",
    "DEFAULT_SWEEP_DURATION",
    "DEFAULT_URL",
    "REQUEST_TIMEOUT",
    "SWEEP_LEVELS",
    "Settings",
    "UsageError",
    "format_duration",
    "help_text",
    "parse_arguments",
    "parse_duration",
    "parse_levels",
    "parse_names",
    "parse_rate",
]

DEFAULT_CONNECTIONS = 25
DEFAULT_DURATION = 45.0
DEFAULT_SWEEP_DURATION = 30.0
DEFAULT_URL = "http://localhost:9000"
DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27017"
DEFAULT_DATABASE = "squad"
SWEEP_LEVELS = (25, 50, 100, 500, 1000)
REQUEST_TIMEOUT = 10.0

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class UsageError(ValueError):
    """A command line or environment value that cannot be used; the message says why."""


@dataclass(frozen=True)
class Settings:
    """Everything one invocation of ``./bin/benchmark`` needs to know."""

    url: str
    connections: int
    duration: float
    drain: bool
    sweep: bool
    levels: tuple[int, ...]
    targets: tuple[str, ...] | None
    mongo_uri: str
    database: str
    help: bool = False
    # --original-tool: the original challenge's client (benchmark/original_tool/).
    original_tool: bool = False
    # --rate: sign-ups per second offered in total (None: as many as the connections allow).
    rate: int | None = None
    # SQUAD_PID: the service's process id (None: its processes are found by its port).
    service_pid: int | None = None


def parse_duration(text: str) -> float:
    """
    Seconds in ``text``: ``45`` (bare numbers are seconds), ``30s``, ``2m``, ``1m30s``, ``1.5h``,
    ``500ms``. Raises L{UsageError} for anything else, and for zero.
    """
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        position = 0
        seconds = 0.0
        for match in _PART.finditer(cleaned):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position != len(cleaned) or not cleaned:
            raise UsageError(
                f"'{text}' is not a duration: use seconds (45), or a number with a unit: "
                "30s, 2m, 1m30s"
            )
    if seconds <= 0:
        raise UsageError(f"the duration must be more than zero, not '{text}'")
    return seconds


def format_duration(seconds: float) -> str:
    """The short form a person would type: ``45s``, ``2m``, ``1m30s``, ``2.5s``."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"


def parse_connections(text: str) -> int:
    """A number of connections: a whole number, at least 1."""
    if not re.fullmatch(r"\d+", text.strip()):
        raise UsageError(f"the number of connections must be a whole number, not '{text}'")
    value = int(text)
    if value < 1:
        raise UsageError("the number of connections must be at least 1")
    return value


def parse_rate(text: str) -> int:
    """
    ``--rate``: sign-ups per second in total, a whole number of at least 1 (autocannon hands
    each connection a whole number of requests per second).
    """
    cleaned = text.strip().lower().removesuffix("/s")
    if not re.fullmatch(r"\d+", cleaned):
        raise UsageError(f"--rate takes a whole number of sign-ups per second, not '{text}'")
    value = int(cleaned)
    if value < 1:
        raise UsageError("--rate must be at least 1 sign-up per second")
    return value


def parse_levels(text: str) -> tuple[int, ...]:
    """``SWEEP_LEVELS``: connection levels separated by commas (``25,50``), duplicates dropped."""
    levels: list[int] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            level = parse_connections(part)
        except UsageError as error:
            raise UsageError(f"SWEEP_LEVELS: {error}") from None
        if level not in levels:
            levels.append(level)
    if not levels:
        raise UsageError("SWEEP_LEVELS is set but names no connection level (example: 25,50)")
    return tuple(levels)


def parse_names(text: str, variable: str) -> tuple[str, ...]:
    """A list of names separated by commas (``squad,baseline``), duplicates dropped."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise UsageError(f"{variable} is set but names nothing (example: squad,baseline)")
    return tuple(names)


def check_url(text: str) -> str:
    """The service's base URL, without a trailing slash; only http(s) URLs with a host."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"URL must look like http://localhost:9000, not '{text}'")
    if parts.query or parts.fragment:
        raise UsageError(
            f"URL is the service's base address, without ?query or #fragment: '{text}'"
        )
    return text.strip().rstrip("/")


class _Parser(argparse.ArgumentParser):
    """argparse that raises L{UsageError} instead of exiting, so callers and tests decide."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="bin/benchmark",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Load-test squad the way the original challenge's tool did: GET /health, DELETE\n"
            "/collections, then POST /users with a new random sign-up body on every request\n"
            "(autocannon, pipelining 1, 10 s request timeout). Prints the original tool's table\n"
            "(requests sent, non-2xx, errors, timeouts) with the 2xx count, requests/s and\n"
            "latency p50/p90/p99/max, then checks that every 2xx answer left a user in the\n"
            "database."
        ),
        epilog=(
            "environment:\n"
            f"  URL               the service (default {DEFAULT_URL})\n"
            f"  SQUAD_MONGO_URI   the database the check reads (default {DEFAULT_MONGO_URI})\n"
            f"  SQUAD_DATABASE    its name (default {DEFAULT_DATABASE})\n"
            "  SQUAD_PID         the service's process id, for its memory (else: found by port)\n"
            "  SQUAD_DB_DATA     --rate: the database's data folder, for its WAL (default var/db)\n"
            "  SQUAD_SLOW_MAX    --rate: the slow step's longest, for the lag target (default 15)\n"
            "  SWEEP_LEVELS      restrict a sweep's levels, e.g. 25,50\n"
            "  SWEEP_TARGETS     restrict a sweep's targets, e.g. squad,baseline\n"
            "                    (squad, baseline, ceiling, stored, stored-processed,\n"
            "                    reference-node, reference-node-cluster)\n"
            "\n"
            "examples:\n"
            "  bin/benchmark                 25 connections for 45s\n"
            "  bin/benchmark 1000 30s        1000 connections for 30s\n"
            "  bin/benchmark 50 5s --drain   and wait until every user is processed\n"
            "  bin/benchmark --rate 500 50 30s   offer 500 sign-ups/s for 30s, then the lag\n"
            "  SWEEP_LEVELS=25,50 bin/benchmark --sweep 5s\n"
            "  bin/benchmark --original-tool 25 10s   the original tool, its non-2xx explained\n"
        ),
    )
    parser.add_argument(
        "connections",
        nargs="?",
        help=f"concurrent connections (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument(
        "duration",
        nargs="?",
        help=f"how long to load: 45, 30s, 2m (default {format_duration(DEFAULT_DURATION)})",
    )
    parser.add_argument(
        "--sweep",
        nargs="?",
        const=format_duration(DEFAULT_SWEEP_DURATION),
        default=None,
        metavar="DURATION",
        help=(
            "run "
            + ", ".join(str(level) for level in SWEEP_LEVELS)
            + " connections against squad, its baseline and references; write "
            "var/benchmark/<UTC time>/report.md with charts; print that folder last "
            f"(default {format_duration(DEFAULT_SWEEP_DURATION)} per level)"
        ),
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="after the load, wait (10 minutes at most) until no stored user is unprocessed",
    )
    parser.add_argument(
        "--rate",
        metavar="R",
        default=None,
        help=(
            "offer R sign-ups/s in total (autocannon's overallRate) instead of as many as the "
            "connections allow; sample squad's backlogs and the database's WAL, then report the "
            "slow-step lag in var/benchmark/<UTC time>/ (benchmark/rate/)"
        ),
    )
    parser.add_argument(
        "--original-tool",
        action="store_true",
        help=(
            "run the original challenge's client instead (autocannon 4.6.0, faker 4.1.0, the "
            "body set after each response, so each connection's first request has none) and "
            "explain its non-2xx from squad's /metrics; with --sweep, one more squad row per "
            "level"
        ),
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    return parser


def help_text() -> str:
    """The text of ``--help``."""
    return _parser().format_help()


def _service_pid(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def parse_arguments(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """
    The L{Settings} for ``argv`` (without the program name) and ``environ``. Raises
    L{UsageError} with a message for the person who typed the command.
    """
    options = _parser().parse_args(list(argv))
    url = check_url(environ.get("URL") or DEFAULT_URL)
    levels = parse_levels(environ["SWEEP_LEVELS"]) if environ.get("SWEEP_LEVELS") else SWEEP_LEVELS
    targets = (
        parse_names(environ["SWEEP_TARGETS"], "SWEEP_TARGETS")
        if environ.get("SWEEP_TARGETS")
        else None
    )
    mongo_uri = environ.get("SQUAD_MONGO_URI") or DEFAULT_MONGO_URI
    database = environ.get("SQUAD_DATABASE") or DEFAULT_DATABASE
    sweep = options.sweep is not None
    if options.original_tool and options.drain and not sweep:
        raise UsageError(
            "--original-tool runs the original's procedure, which has no drain: drop --drain"
        )
    rate = None if options.rate is None else parse_rate(options.rate)
    if rate is not None and sweep:
        raise UsageError("--rate is one run at one offered rate: it does not combine with --sweep")
    if sweep:
        if options.connections is not None:
            raise UsageError(
                "--sweep runs its own connection levels ("
                + ", ".join(str(level) for level in SWEEP_LEVELS)
                + "; SWEEP_LEVELS restricts them): give it only a duration, as in --sweep 30s"
            )
        connections = levels[0]
        duration = parse_duration(options.sweep)
    else:
        connections = (
            DEFAULT_CONNECTIONS
            if options.connections is None
            else parse_connections(options.connections)
        )
        duration = (
            DEFAULT_DURATION if options.duration is None else parse_duration(options.duration)
        )
    return Settings(
        url=url,
        connections=connections,
        duration=duration,
        drain=bool(options.drain),
        sweep=sweep,
        levels=levels,
        targets=targets,
        mongo_uri=mongo_uri,
        database=database,
        help=bool(options.help),
        original_tool=bool(options.original_tool),
        rate=rate,
        service_pid=_service_pid(environ.get("SQUAD_PID")),
    )
