"""Tests for squad.passwords: sealing on the request path, key files, and argon2id hashing."""

from __future__ import annotations

import base64
import os
import stat

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from squad.passwords import (
    KEY_BYTES,
    PasswordSealer,
    SealKeyError,
    UnsealError,
    _create_key_file,
    generate_key,
    hash_password,
    key_from_environment,
    load_or_create_key,
    needs_rehash,
    verify_password,
)

PASSWORD = "correct horse battery staple"
USER = bytes.fromhex("6571f1d2a3b4c5d6e7f80912")  # an ObjectId's 12 bytes
OTHER_USER = bytes.fromhex("6571f1d2a3b4c5d6e7f80913")


class SealerTests(SynchronousTestCase):
    """Sealing: authenticated encryption bound to one user, under a key kept out of the DB."""

    def setUp(self) -> None:
        self.key = generate_key()
        self.sealer = PasswordSealer(self.key)

    def test_round_trip(self) -> None:
        """unseal() returns exactly what seal() sealed, for ASCII and non-ASCII passwords."""
        for password in (PASSWORD, "пароль🔑 ü", "p" * 128, "é" * 128, ""):
            with self.subTest(password=password):
                sealed = self.sealer.seal(password, associated=USER)
                self.assertEqual(self.sealer.unseal(sealed, associated=USER), password)

    def test_another_sealer_with_the_same_key_unseals(self) -> None:
        """Any process holding the key can unseal: nothing else is needed."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        self.assertEqual(PasswordSealer(self.key).unseal(sealed, associated=USER), PASSWORD)

    def test_sealed_form_does_not_contain_the_password(self) -> None:
        """The sealed bytes contain neither the plaintext nor its base64."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        self.assertNotIn(PASSWORD.encode(), sealed)
        self.assertNotIn(base64.b64encode(PASSWORD.encode()), base64.b64encode(sealed))

    def test_every_seal_is_different(self) -> None:
        """Sealing the same password twice gives different bytes (a fresh random nonce)."""
        self.assertNotEqual(
            self.sealer.seal(PASSWORD, associated=USER), self.sealer.seal(PASSWORD, associated=USER)
        )

    def test_length_is_padded(self) -> None:
        """Sealed sizes move in 64-byte steps, so the exact password length does not show."""
        sizes = {n: len(self.sealer.seal("p" * n, associated=USER)) for n in (8, 40, 63, 64, 128)}
        self.assertEqual(sizes[8], sizes[40])
        self.assertEqual(sizes[8], sizes[63])
        self.assertEqual(sizes[64] - sizes[63], 64)
        self.assertEqual(sizes[128] - sizes[64], 64)

    def test_any_altered_byte_is_refused(self) -> None:
        """Flipping any single bit anywhere in the sealed bytes makes unseal() refuse them."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        for index in range(len(sealed)):
            altered = bytearray(sealed)
            altered[index] ^= 0x01
            with self.subTest(index=index), self.assertRaises(UnsealError):
                self.sealer.unseal(bytes(altered), associated=USER)

    def test_truncated_or_extended_is_refused(self) -> None:
        """Sealed bytes cut short or with bytes appended are refused."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        for candidate in (b"", sealed[:10], sealed[:-1], sealed + b"\x00"):
            with self.subTest(length=len(candidate)), self.assertRaises(UnsealError):
                self.sealer.unseal(candidate, associated=USER)

    def test_another_user_is_refused(self) -> None:
        """A sealed password moved to another user's document does not unseal."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        with self.assertRaises(UnsealError) as caught:
            self.sealer.unseal(sealed, associated=OTHER_USER)
        self.assertIn("another user", str(caught.exception))

    def test_another_key_is_refused_and_said_so(self) -> None:
        """Unsealing under the wrong key fails with a message that says it is the key."""
        sealed = self.sealer.seal(PASSWORD, associated=USER)
        with self.assertRaises(UnsealError) as caught:
            PasswordSealer(generate_key()).unseal(sealed, associated=USER)
        self.assertIn("another key", str(caught.exception))

    def test_empty_associated_data_is_refused(self) -> None:
        """Sealing without the user's id is a programming error, refused at once."""
        with self.assertRaises(ValueError):
            self.sealer.seal(PASSWORD, associated=b"")

    def test_key_must_be_32_bytes(self) -> None:
        """A key of any other length is refused with a clear error."""
        for size in (0, 16, 31, 33, 64):
            with self.subTest(size=size), self.assertRaises(SealKeyError):
                PasswordSealer(b"k" * size)

    def test_repr_does_not_show_the_key(self) -> None:
        """A sealer's repr shows a key id, never the key."""
        shown = repr(self.sealer)
        self.assertNotIn(self.key.hex(), shown)
        self.assertNotIn(base64.b64encode(self.key).decode(), shown)

    @settings(max_examples=200, deadline=None)
    @given(
        password=st.text(min_size=8, max_size=128),
        associated=st.binary(min_size=1, max_size=32),
    )
    def test_round_trip_property(self, password: str, associated: bytes) -> None:
        """Any valid password round-trips for any user id, and is not in the sealed bytes."""
        sealed = self.sealer.seal(password, associated=associated)
        self.assertNotIn(password.encode("utf-8"), sealed)
        self.assertEqual(self.sealer.unseal(sealed, associated=associated), password)


class KeyFileTests(SynchronousTestCase):
    """load_or_create_key: one key per deployment, created safely, refused when unsafe."""

    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.path = self.directory.child("seal.key")

    def test_creates_a_private_key_file(self) -> None:
        """A missing key file is created with 32 random bytes, readable by its owner only."""
        key = load_or_create_key(self.path)
        self.assertEqual(len(key), KEY_BYTES)
        self.assertEqual(self.path.getContent(), key)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.path).st_mode), 0o600)

    def test_mode_is_0600_whatever_the_umask(self) -> None:
        """A permissive umask does not make the new key file readable by others."""
        old = os.umask(0)
        try:
            load_or_create_key(self.path.path)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.path.path).st_mode), 0o600)

    def test_same_key_every_time(self) -> None:
        """Later calls read the key that the first call created."""
        self.assertEqual(load_or_create_key(self.path), load_or_create_key(self.path.path))

    def test_missing_folders_are_created(self) -> None:
        """The key file's parent folders are created, private to the owner."""
        nested = self.directory.descendant(["var", "keys", "seal.key"])
        self.assertEqual(len(load_or_create_key(nested)), KEY_BYTES)
        self.assertEqual(stat.S_IMODE(os.stat(nested.parent().path).st_mode) & 0o077, 0)

    def test_existing_key_is_never_replaced(self) -> None:
        """Creation that loses a race to another process keeps the winner's key and no litter."""
        winner = generate_key()
        self.path.setContent(winner)
        self.path.chmod(0o600)
        _create_key_file(self.path.path)
        self.assertEqual(load_or_create_key(self.path), winner)
        self.assertEqual(self.directory.listdir(), ["seal.key"])

    def test_no_temporary_files_left(self) -> None:
        """Creating a key leaves exactly the key file in its folder."""
        load_or_create_key(self.path)
        self.assertEqual(self.directory.listdir(), ["seal.key"])

    def test_open_to_others_is_refused(self) -> None:
        """A key file with any group or other permission is refused, with the fix to apply."""
        self.path.setContent(generate_key())
        for mode in (0o640, 0o604, 0o644, 0o660, 0o602):
            self.path.chmod(mode)
            with self.subTest(mode=oct(mode)), self.assertRaises(SealKeyError) as caught:
                load_or_create_key(self.path)
            self.assertIn("chmod 600", str(caught.exception))

    def test_owner_only_modes_are_accepted(self) -> None:
        """Read-only (0400) and read-write (0600) for the owner are both fine."""
        key = generate_key()
        self.path.setContent(key)
        for mode in (0o400, 0o600):
            self.path.chmod(mode)
            with self.subTest(mode=oct(mode)):
                self.assertEqual(load_or_create_key(self.path), key)

    def test_wrong_length_is_refused(self) -> None:
        """A key file that is not exactly 32 bytes is refused, never padded or cut."""
        for content in (b"", b"k" * 31, b"k" * 33, base64.b64encode(generate_key()) + b"\n"):
            self.path.setContent(content)
            self.path.chmod(0o600)
            with self.subTest(length=len(content)), self.assertRaises(SealKeyError) as caught:
                load_or_create_key(self.path)
            self.assertIn("exactly 32", str(caught.exception))

    def test_directory_is_refused(self) -> None:
        """A folder where the key file should be is refused."""
        self.path.makedirs()
        self.path.chmod(0o700)
        with self.assertRaises(SealKeyError):
            load_or_create_key(self.path)

    def test_unusable_path_is_a_clear_error(self) -> None:
        """A path that cannot exist (under a regular file) gives SealKeyError, not OSError."""
        blocker = self.directory.child("file")
        blocker.setContent(b"")
        with self.assertRaises(SealKeyError) as caught:
            load_or_create_key(blocker.child("seal.key"))
        self.assertIn(blocker.path, str(caught.exception))

    def test_symbolic_link_to_a_private_key_is_followed(self) -> None:
        """Mounted secrets are often links: a link to a 0600 key file works."""
        key = generate_key()
        target = self.directory.child("real.key")
        target.setContent(key)
        target.chmod(0o600)
        os.symlink(target.path, self.path.path)
        self.assertEqual(load_or_create_key(self.path), key)


class EnvironmentKeyTests(SynchronousTestCase):
    """key_from_environment: SQUAD_SEAL_KEY in base64, never echoed."""

    def test_standard_and_url_safe_base64(self) -> None:
        """Standard and URL-safe base64, padded or not, with surrounding whitespace, decode."""
        key = bytes(range(250, 256)) + generate_key()[6:]  # bytes that differ between alphabets
        for text in (
            base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode().rstrip("="),
            f"  {base64.b64encode(key).decode()}\n",
        ):
            with self.subTest(text=text):
                self.assertEqual(key_from_environment(text), key)

    def test_bad_values_are_refused_without_echo(self) -> None:
        """Empty, non-base64 and wrong-length values are refused; the message omits the value."""
        for text in ("", "   ", "not base64 at all!", "c2hvcnQ=", "ü" * 44):
            with self.subTest(text=text), self.assertRaises(SealKeyError) as caught:
                key_from_environment(text)
            message = str(caught.exception)
            self.assertIn("SQUAD_SEAL_KEY", message)
            if text.strip():
                self.assertNotIn(text.strip(), message)

    def test_wrong_length_says_the_length(self) -> None:
        """A well-formed value of the wrong size says how many bytes it decoded to."""
        with self.assertRaises(SealKeyError) as caught:
            key_from_environment(base64.b64encode(b"k" * 16).decode())
        self.assertIn("16 bytes", str(caught.exception))


class HashTests(SynchronousTestCase):
    """argon2id hashing at the OWASP parameters."""

    def test_phc_string_states_argon2id_and_owasp_parameters(self) -> None:
        """The hash is argon2id v19 with m=19 MiB, t=2, p=1, a 16-byte salt and 32-byte tag."""
        password_hash = hash_password(PASSWORD)
        empty, algorithm, version, parameters, salt, digest = password_hash.split("$")
        self.assertEqual(
            (empty, algorithm, version, parameters), ("", "argon2id", "v=19", "m=19456,t=2,p=1")
        )
        self.assertEqual(len(base64.b64decode(salt + "==")), 16)
        self.assertEqual(len(base64.b64decode(digest + "=")), 32)
        self.assertNotIn(PASSWORD, password_hash)

    def test_verify(self) -> None:
        """The right password verifies; a wrong one, or a near miss, does not."""
        password_hash = hash_password(PASSWORD)
        self.assertTrue(verify_password(password_hash, PASSWORD))
        self.assertFalse(verify_password(password_hash, PASSWORD + " "))
        self.assertFalse(verify_password(password_hash, "wrong password"))

    def test_salted(self) -> None:
        """The same password hashes differently each time (a fresh salt)."""
        self.assertNotEqual(hash_password(PASSWORD), hash_password(PASSWORD))

    def test_unicode_password(self) -> None:
        """Non-ASCII passwords hash and verify as their UTF-8 bytes."""
        self.assertTrue(verify_password(hash_password("пароль🔑"), "пароль🔑"))

    def test_corrupt_hash_is_an_error_not_a_mismatch(self) -> None:
        """A stored hash that is not a hash raises, so corruption is not taken for a bad guess."""
        with self.assertRaises(InvalidHashError):
            verify_password("not a hash", PASSWORD)

    def test_needs_rehash(self) -> None:
        """Hashes made with weaker parameters are flagged for rehashing; today's are not."""
        weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
        self.assertTrue(verify_password(weak, PASSWORD))
        self.assertTrue(needs_rehash(weak))
        self.assertFalse(needs_rehash(hash_password(PASSWORD)))
