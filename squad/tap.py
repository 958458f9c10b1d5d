"""``twistd squad``: the command-line options, and the service tree they choose.

``Options`` converts and checks every option (command line beats environment beats default)
into one frozen ``squad.runtime.settings.Settings``, and refuses a taken port before anything
starts. ``makeService`` only wires: the supervisor of ``squad.runtime.supervisor``, whose
workers each run the process tree of ``squad.runtime.service_tree``, whatever ``--workers``
is, so that SIGHUP can reload even one worker. Only a ``--port`` other than ``tcp:`` with one
worker runs that tree in this process, and cannot reload.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import IService
from twisted.python import usage

from squad.http.deadlines import MAX_CONNECTIONS, REQUEST_DEADLINE_SECONDS
from squad.passwords import SealKeyError
from squad.runtime.settings import Settings, load_seal_key

__all__ = ["Options", "makeService"]

# (option, environment variable, default, help)
PARAMETERS: list[tuple[str, str, str | None, str]] = [
    (
        "port",
        "SQUAD_PORT",
        "tcp:9000",
        "Twisted endpoint to listen on, e.g. tcp:9000 or tcp:8080:interface=127.0.0.1",
    ),
    (
        "mongo-uri",
        "SQUAD_MONGO_URI",
        "mongodb://127.0.0.1:27017",
        "MongoDB server(s); a replica-set URI works",
    ),
    ("database", "SQUAD_DATABASE", "squad", "database name"),
    ("workers", "SQUAD_WORKERS", None, "processes serving the one listening port"),
    ("slow-min", "SQUAD_SLOW_MIN", "5", "shortest duration of the stand-in slow step, seconds"),
    ("slow-max", "SQUAD_SLOW_MAX", "15", "longest duration of the stand-in slow step, seconds"),
    (
        "verifier-url",
        "SQUAD_VERIFIER_URL",
        None,
        "when set, the slow step POSTs the user's id to this HTTP service instead of the stand-in",
    ),
    (
        "lease-seconds",
        "SQUAD_LEASE_SECONDS",
        "60",
        "how long slow work of a process that died waits before another takes it over",
    ),
    (
        "write-concern",
        "SQUAD_WRITE_CONCERN",
        "1",
        "write concern of acknowledged writes: a number, or majority on a replica set",
    ),
    (
        "max-connections",
        "SQUAD_MAX_CONNECTIONS",
        str(MAX_CONNECTIONS),
        "open connections one worker process holds at most; past it new ones get a 503",
    ),
    (
        "request-timeout",
        "SQUAD_REQUEST_TIMEOUT",
        f"{REQUEST_DEADLINE_SECONDS:g}",
        "seconds a client may take to send a whole request (headers and body); then 408",
    ),
    (
        "instance-name",
        "SQUAD_INSTANCE",
        None,
        "this instance's name in the start-up log line and in metrics (label squad_instance), "
        "for telling apart instances that share a database",
    ),
    (
        "seal-key-file",
        "SQUAD_SEAL_KEY_FILE",
        "var/seal.key",
        "file holding the key that seals passwords until they are hashed (created if missing; "
        "SQUAD_SEAL_KEY, base64, takes precedence)",
    ),
]

_DEFAULT_TEXT = {
    "workers": "the number of CPUs",
    "verifier-url": "none, the stand-in",
    "instance-name": "the host name and the --port number, e.g. web-1:9000",
}

_INSTANCE_NAME = re.compile(r"^[\w.:@/+-]{1,100}$")

_DATABASE_NAME = re.compile(r"^[^/\\. \"$*<>:|?\x00]{1,63}$")


def _positive_float(name: str, text: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise usage.UsageError(f"--{name} must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        limit = "zero or more" if allow_zero else "more than zero"
        raise usage.UsageError(f"--{name} must be {limit} seconds, not {text!r}")
    return value


class Options(usage.Options):
    """Options of ``twistd squad``; environment variables fill in what the command line omits.

    ``environ`` and ``probe_port`` are parameters for tests; twistd builds it with neither.
    Once parsed, ``settings`` holds every value, converted and checked.
    """

    synopsis = "[options]"
    longdesc = (
        "squad serves POST /users: it stores each sign-up in MongoDB, answers 201 at once, and "
        "runs the slow verification step afterwards, durably. Every option can also be set by "
        "the environment variable named in its description."
    )
    optFlags = [
        [
            "allow-flush",
            None,
            "enable DELETE /collections (env SQUAD_ALLOW_FLUSH=1); never in production",
        ],
    ]
    optParameters = [
        [name, None, None, f"{help_text} (env {env}; default {_DEFAULT_TEXT.get(name, default)})"]
        for name, env, default, help_text in PARAMETERS
    ]

    settings: Settings

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        probe_port: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._environ = dict(os.environ if environ is None else environ)
        self._probe_port = probe_port or _probe_port

    def postOptions(self) -> None:
        for name, env, default, _ in PARAMETERS:
            if self[name] is None:
                self[name] = self._environ.get(env) or default
        self["allow-flush"] = bool(self["allow-flush"]) or self._environ.get(
            "SQUAD_ALLOW_FLUSH", ""
        ).lower() in ("1", "true", "yes")

        self["port"] = self._check_port(self["port"])
        self["mongo-uri"] = self._check_mongo_uri(self["mongo-uri"])
        if not _DATABASE_NAME.match(self["database"]):
            raise usage.UsageError(
                f'--database must be 1 to 63 characters without spaces or any of /\\."$*<>:|?,'
                f" not {self['database']!r}"
            )
        self["workers"] = self._check_workers(self["workers"])
        self["slow-min"] = _positive_float("slow-min", self["slow-min"], allow_zero=True)
        self["slow-max"] = _positive_float("slow-max", self["slow-max"], allow_zero=True)
        if self["slow-min"] > self["slow-max"]:
            raise usage.UsageError(
                f"--slow-min ({self['slow-min']:g}) must not be more than --slow-max "
                f"({self['slow-max']:g})"
            )
        if self["verifier-url"] is not None:
            self["verifier-url"] = self._check_url(self["verifier-url"])
        self["lease-seconds"] = _positive_float("lease-seconds", self["lease-seconds"])
        self["write-concern"] = self._check_write_concern(self["write-concern"])
        self["max-connections"] = self._check_max_connections(self["max-connections"])
        self["request-timeout"] = _positive_float("request-timeout", self["request-timeout"])
        self["instance-name"] = self._check_instance_name(self["instance-name"], self["port"])
        try:
            self["seal-key"] = load_seal_key(self["seal-key-file"], self._environ)
        except (SealKeyError, OSError) as error:
            raise usage.UsageError(f"--seal-key-file: {error}") from None
        self.settings = Settings(
            **{name.replace("-", "_"): self[name] for name, *_ in PARAMETERS},
            allow_flush=self["allow-flush"],
            seal_key=self["seal-key"],
        )
        self._probe_port(self.settings.port)

    @staticmethod
    def _check_port(text: str) -> str:
        from twisted.internet import endpoints
        from twisted.internet.testing import MemoryReactor

        try:
            endpoints.serverFromString(MemoryReactor(), text)
        except (ValueError, TypeError, KeyError) as error:
            raise usage.UsageError(
                f"--port must be a Twisted endpoint like tcp:9000, not {text!r} ({error})"
            ) from None
        return text

    @staticmethod
    def _check_instance_name(text: str | None, port: str) -> str:
        if text is None:
            # Unique among the instances of one host as long as each has its own port.
            parts = port.split(":")
            where = parts[1] if len(parts) > 1 and parts[0] == "tcp" else port
            return f"{socket.gethostname()}:{where}"
        if not _INSTANCE_NAME.match(text):
            raise usage.UsageError(
                "--instance-name must be 1 to 100 letters, digits or . : @ / + - _ "
                f"(no spaces), not {text!r}"
            )
        return text

    @staticmethod
    def _check_mongo_uri(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme != "mongodb" or not parts.netloc:
            raise usage.UsageError(f"--mongo-uri must look like mongodb://host:27017, not {text!r}")
        return text

    @staticmethod
    def _check_workers(text: str | None) -> int:
        if text is None:
            return os.cpu_count() or 1
        try:
            workers = int(text)
        except ValueError:
            raise usage.UsageError(f"--workers must be a whole number, not {text!r}") from None
        if not 1 <= workers <= 256:
            raise usage.UsageError(f"--workers must be between 1 and 256, not {workers}")
        return workers

    @staticmethod
    def _check_max_connections(text: str) -> int:
        try:
            limit = int(text)
        except ValueError:
            raise usage.UsageError(
                f"--max-connections must be a whole number, not {text!r}"
            ) from None
        if not 1 <= limit <= 1_000_000:
            raise usage.UsageError(f"--max-connections must be between 1 and 1000000, not {limit}")
        return limit

    @staticmethod
    def _check_url(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise usage.UsageError(
                f"--verifier-url must be an http:// or https:// URL, not {text!r}"
            )
        return text

    @staticmethod
    def _check_write_concern(text: str) -> int | str:
        if text.isdigit():
            return int(text)
        if re.fullmatch(r"[A-Za-z][\w-]{0,63}", text):
            return text  # "majority" or a replica-set tag
        raise usage.UsageError(
            f"--write-concern must be a number of nodes or a name like majority, not {text!r}"
        )


def _probe_port(port: str) -> None:
    """Stop start-up with one line when a ``tcp:`` port is taken (Twisted would log and idle
    on). ``SystemExit``, not ``UsageError``: twistd prints its whole usage above the latter,
    which buries the one line that matters here."""
    if port.startswith("tcp:"):
        from squad.runtime.supervisor import bind_listening_socket

        try:
            bind_listening_socket(port).close()
        except (OSError, ValueError) as error:
            raise SystemExit(f"twistd squad: cannot listen on {port}: {error}") from None


def makeService(config: Options, reactor: Any = None) -> IService:
    """The service tree for ``config``: a supervisor of ``--workers`` processes, or with one
    worker on an endpoint other than ``tcp:``, that one process (the reactor is a parameter
    for tests)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    settings = config.settings
    from squad.runtime.supervisor import HangupReloads, supervisor_service

    if settings.workers > 1 or settings.port.startswith("tcp:"):
        return supervisor_service(settings, reactor)

    from squad.runtime.gc_tuning import tune_collector
    from squad.runtime.service_tree import build_process_service

    reactor.callWhenRunning(tune_collector)
    root = build_process_service(settings, reactor)
    HangupReloads(reactor, _cannot_reload).setServiceParent(root)
    return root


def _cannot_reload() -> None:
    from twisted.logger import Logger

    Logger().warn(
        "SIGHUP ignored: a reload needs a tcp: --port (the sockets the workers share); this"
        " process keeps serving unchanged."
    )
