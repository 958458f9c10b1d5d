"""
Passwords are never stored, logged or returned in plaintext.

The design, and its trade-off:

- A standard password KDF is the only thing that may end up in the database: argon2id at the
  OWASP parameters (19 MiB of memory, 2 passes, 1 lane), a random 16-byte salt per password, in
  the PHC string format that argon2-cffi writes and verifies. Each hash costs tens of milliseconds
  of CPU, which thousands of sign-ups a second on two cores cannot pay while the client waits.
- So the request path *seals* the password instead: AES-256-GCM, microseconds, under a key that
  lives in a file (or ``SQUAD_SEAL_KEY``) and never in the database, with the user's id as
  associated data so a sealed blob cannot be moved to another user. The sealed form is what is
  stored with the sign-up; a background hasher (``squad.background.hashing``) later unseals it,
  stores :func:`hash_password`'s result and deletes the sealed form. The plaintext exists only
  in memory, never on disk.
- Trade-off: between the 201 and the background hash, a password is protected by the seal key
  rather than by argon2id. Someone who steals both the database *and* the key in that window
  reads the pending passwords (only those: hashed ones stay hashed). Someone who steals only the
  database, a backup or a log learns nothing but each pending password's length rounded up to a
  64-byte block. Lose the key and the pending sign-ups cannot be hashed: their users must reset
  their passwords. Keep the key out of backups of the database and off shared volumes.

The sealed format (version 1) is ``0x01 || key id (4) || nonce (12) || AES-GCM(padded password)``,
where the key id is a truncated SHA-256 of the key (so a wrong key is told apart from tampering,
and a future sealer can hold several keys while rotating), the header is authenticated with the
associated data, and the padding (``0x80`` then zeros to a multiple of 64 bytes) hides the exact
length. Nonces are random: NIST SP 800-38D caps one key at 2**32 seals, which is about ten days
of a sustained 5,000 sign-ups a second and many years of any real traffic; rotate the key before.

The cost of sealing and hashing, with the commands that measure it, is in docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.python.filepath import FilePath

__all__ = [
    "ARGON2_MEMORY_COST_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "KEY_BYTES",
    "PasswordSealer",
    "SealKeyError",
    "UnsealError",
    "generate_key",
    "hash_password",
    "key_from_environment",
    "load_or_create_key",
    "needs_rehash",
    "verify_password",
]

KEY_BYTES: Final = 32

# OWASP Password Storage Cheat Sheet, argon2id, first configuration.
ARGON2_MEMORY_COST_KIB: Final = 19 * 1024
ARGON2_TIME_COST: Final = 2
ARGON2_PARALLELISM: Final = 1

_HASHER: Final = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

_VERSION: Final = b"\x01"
_KEY_ID_BYTES: Final = 4
_HEADER_BYTES: Final = len(_VERSION) + _KEY_ID_BYTES
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_PAD_BLOCK: Final = 64
_PAD_MARK: Final = b"\x80"
_MIN_SEALED_BYTES: Final = _HEADER_BYTES + _NONCE_BYTES + _PAD_BLOCK + _TAG_BYTES

_KEY_HELP: Final = (
    "generate one with: python -c "
    "'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
)


class SealKeyError(ValueError):
    """The seal key (a key file or ``SQUAD_SEAL_KEY``) is missing, malformed or unsafe."""


class UnsealError(ValueError):
    """A sealed password cannot be opened: wrong key, wrong user, or altered."""


def generate_key() -> bytes:
    """A new random seal key."""
    return os.urandom(KEY_BYTES)


def _key_id(key: bytes) -> bytes:
    # Domain-separated and truncated: identifies a key without helping anyone guess it.
    return hashlib.sha256(b"squad seal key id\x00" + key).digest()[:_KEY_ID_BYTES]


class PasswordSealer:
    """Seals passwords for the short wait before they are hashed. Safe to share between threads."""

    __slots__ = ("_aead", "_header", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SealKeyError(
                f"A seal key must be exactly {KEY_BYTES} bytes, not {len(key)}; {_KEY_HELP}"
            )
        self._aead = AESGCM(key)
        self._key_id = _key_id(key)
        self._header = _VERSION + self._key_id

    def __repr__(self) -> str:
        return f"<PasswordSealer key id {self._key_id.hex()}>"

    def seal(self, password: str, *, associated: bytes) -> bytes:
        """
        Encrypt and authenticate ``password``, bound to ``associated`` (the user's id).

        :raises ValueError: if ``associated`` is empty (the binding would be lost) or the password
            holds a lone surrogate (:class:`UnicodeEncodeError`); the parser refuses both.
        """
        if not associated:
            raise ValueError("seal() needs the user's id as associated data, not b''")
        data = password.encode("utf-8")
        padded = data + _PAD_MARK + bytes(-(len(data) + 1) % _PAD_BLOCK)
        nonce = os.urandom(_NONCE_BYTES)
        header = self._header
        return header + nonce + self._aead.encrypt(nonce, padded, header + associated)

    def unseal(self, sealed: bytes, *, associated: bytes) -> str:
        """
        Return the password that :meth:`seal` sealed with this key for ``associated``.

        :raises UnsealError: with the reason, if ``sealed`` is not a sealed password, was sealed
            under another key, for another user, or was altered in any way.
        """
        if len(sealed) < _MIN_SEALED_BYTES or sealed[:1] != _VERSION:
            raise UnsealError(
                "This is not a sealed password (unknown format or too short to be one)."
            )
        key_id = sealed[1:_HEADER_BYTES]
        if key_id != self._key_id:
            raise UnsealError(
                f"This password was sealed under another key (key id {key_id.hex()}, this "
                f"sealer's is {self._key_id.hex()}); load the key it was sealed with."
            )
        nonce = sealed[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
        try:
            padded = self._aead.decrypt(
                nonce, sealed[_HEADER_BYTES + _NONCE_BYTES :], self._header + associated
            )
        except InvalidTag:
            raise UnsealError(
                "The sealed password failed authentication: it was altered, or it belongs to "
                "another user (the associated data differ)."
            ) from None
        unpadded = padded.rstrip(b"\x00")
        if not unpadded.endswith(_PAD_MARK):
            # Authentic but malformed: only a bug in a sealer could write this.
            raise UnsealError("The sealed password is authentic but its padding is malformed.")
        try:
            return unpadded[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise UnsealError("The sealed password is authentic but is not UTF-8.") from None


def _fsdecode(path: FilePath[str] | FilePath[bytes] | str) -> str:
    return os.fsdecode(path.path if isinstance(path, FilePath) else path)


def _read_key_file(path: str) -> bytes:
    """Read a key file, refusing one that others may read or that is not exactly one key."""
    # fstat the descriptor we read from, so the checks and the read see the same file. Symbolic
    # links are followed on purpose: mounted secrets (Kubernetes, Docker) are usually links.
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise SealKeyError(f"The seal key file {path} is not a regular file.")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise SealKeyError(
                f"The seal key file {path} is open to group or others (mode {mode:04o}); "
                f"restrict it with: chmod 600 {path}"
            )
        content = b""
        while len(content) <= KEY_BYTES:
            chunk = os.read(descriptor, KEY_BYTES + 1 - len(content))
            if not chunk:
                break
            content += chunk
    finally:
        os.close(descriptor)
    if len(content) != KEY_BYTES:
        size = f"{len(content)} bytes" if len(content) <= KEY_BYTES else "more bytes"
        raise SealKeyError(
            f"The seal key file {path} holds {size}; it must hold exactly {KEY_BYTES} raw random "
            "bytes. Do not replace it casually: sign-ups not yet hashed need the key that sealed "
            "them."
        )
    return content


def _create_key_file(path: str) -> None:
    """Write a new key to ``path`` atomically, unless another process got there first."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    )
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask says
        key = generate_key()
        written = 0
        while written < len(key):
            written += os.write(descriptor, key[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        # link(), unlike rename(), never replaces an existing file: when several workers start
        # at once, exactly one key wins and every worker reads that one.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    directory_descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory_descriptor)  # the new name must survive a crash with the key
    finally:
        os.close(directory_descriptor)


def load_or_create_key(path: FilePath[str] | FilePath[bytes] | str) -> bytes:
    """
    Return the seal key stored at ``path``, creating the file (mode 0600) if it is missing.

    :raises SealKeyError: if the file is not exactly 32 bytes, is open to group or others, is not
        a regular file, or cannot be read or created.
    """
    target = _fsdecode(path)
    try:
        try:
            return _read_key_file(target)
        except FileNotFoundError:
            _create_key_file(target)
        return _read_key_file(target)
    except SealKeyError:
        raise
    except OSError as error:
        raise SealKeyError(
            f"Cannot read or create the seal key file {target}: {error.strerror or error}."
        ) from None


_URLSAFE_TO_STANDARD: Final = str.maketrans("-_", "+/")


def key_from_environment(value: str) -> bytes:
    """
    Decode the seal key given in ``SQUAD_SEAL_KEY``: 32 bytes in base64 (standard or URL-safe,
    padding optional). Error messages never repeat the value: it is a secret.

    :raises SealKeyError: if the value is empty, not base64, or not 32 bytes long.
    """
    text = value.strip()
    if not text:
        raise SealKeyError(f"SQUAD_SEAL_KEY is empty; {_KEY_HELP}")
    text = text.translate(_URLSAFE_TO_STANDARD)
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealKeyError(f"SQUAD_SEAL_KEY is not valid base64; {_KEY_HELP}") from None
    if len(key) != KEY_BYTES:
        raise SealKeyError(
            f"SQUAD_SEAL_KEY decodes to {len(key)} bytes; it must be exactly {KEY_BYTES}. "
            f"{_KEY_HELP[0].upper()}{_KEY_HELP[1:]}"
        )
    return key


def hash_password(password: str) -> str:
    """
    The argon2id PHC string of ``password`` with a fresh random salt.

    CPU-heavy (tens of milliseconds): call it from a thread, never on the reactor thread.
    argon2-cffi releases the GIL while it hashes, so that thread runs beside the reactor.
    """
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """
    Whether ``password`` matches ``password_hash`` (a PHC string from :func:`hash_password`).

    As slow as hashing: call it from a thread.

    :raises argon2.exceptions.InvalidHashError: if ``password_hash`` is not a valid hash at all;
        a corrupt stored hash is a fault to report, not a wrong password.
    """
    try:
        return _HASHER.verify(password_hash, password)
    except VerificationError:
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether ``password_hash`` was made with other parameters than today's (then rehash it)."""
    return _HASHER.check_needs_rehash(password_hash)
