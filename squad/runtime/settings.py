"""The settings of a squad service: checked once by ``squad.tap.Options``, then passed as data.

A worker process gets them from its parent as JSON in ``SQUAD_WORKER_SETTINGS``, so it never
parses options again; the seal key is the one value that is not in that JSON, since the
environment of a process can be read by others: each process loads it from the same place.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from squad.passwords import key_from_environment, load_or_create_key

__all__ = ["WORKER_SETTINGS_ENV", "Settings", "load_seal_key"]

#: The environment variable that carries a worker's settings from the supervisor.
WORKER_SETTINGS_ENV = "SQUAD_WORKER_SETTINGS"


@dataclass(frozen=True)
class Settings:
    """Every option of ``twistd squad``, converted and checked (see ``squad.tap.PARAMETERS``)."""

    port: str
    mongo_uri: str
    database: str
    workers: int
    slow_min: float
    slow_max: float
    verifier_url: str | None
    allow_flush: bool
    lease_seconds: float
    write_concern: int | str
    max_connections: int
    request_timeout: float
    instance_name: str
    seal_key_file: str
    seal_key: bytes = field(repr=False, compare=False)

    def public(self) -> dict[str, object]:
        """Every setting but the seal key: what the start-up line and a worker's JSON hold."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        del values["seal_key"]
        return values

    def to_json(self) -> str:
        """The settings for a worker process (``from_json`` reads them back)."""
        return json.dumps(self.public())

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str]) -> Settings:
        """The settings a supervisor wrote with ``to_json``, with the seal key loaded from
        ``environ`` or the key file, as the supervisor did."""
        values = json.loads(text)
        return cls(**values, seal_key=load_seal_key(values["seal_key_file"], environ))


def load_seal_key(path: str, environ: Mapping[str, str]) -> bytes:
    """The key that seals passwords until they are hashed: ``SQUAD_SEAL_KEY`` (base64) when
    set, else the file at ``path``, created with a new key if missing.

    Raises ``squad.passwords.SealKeyError`` or ``OSError`` with a sentence for a person.
    """
    environment_key = environ.get("SQUAD_SEAL_KEY")
    if environment_key:
        return key_from_environment(environment_key)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return load_or_create_key(path)
