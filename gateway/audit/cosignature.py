"""Cosigners: the signing side of c2sp.org/tlog-cosignature, and their key files.

Design note, by the section of c2sp.org/tlog-cosignature each piece implements:

- "Format": a cosignature is a note signature whose bytes are a ``timestamped_signature``,
  the 8-byte big-endian POSIX time of signing and then the signature; the key ID is
  ``SHA-256(name || 0x0A || type || public key)[:4]`` with type 0x04 (Ed25519) or 0x06
  (ML-DSA-44). :class:`Ed25519Cosigner` and :class:`MLDSA44Cosigner` are
  :class:`~gateway.audit.note.NoteSigner`\\ s, so :func:`~gateway.audit.note.signature_line`
  and :func:`~gateway.audit.note.sign_note` write their lines.
- "Ed25519 signed message" and "ML-DSA-44 signed message": the messages come from
  :mod:`gateway.audit.sigtypes`, the same code that verifies them. The ML-DSA-44 message does
  not cover a checkpoint's extension lines, so :class:`MLDSA44Cosigner` refuses to sign a
  checkpoint that has any rather than make a statement about less than it was shown.
- Timestamps come from a clock (``time.time`` unless one is given) and are never zero
  (tlog-witness: "the timestamp MUST NOT be zero").

Key files (not part of C2SP) hold one key per line in the encoding of golang.org/x/mod
``note.NewSigner`` with the cosignature type byte: ``PRIVATE+KEY+<name>+<hex key ID>+
base64(type || 32-byte seed)``; an ML-DSA-44 key is its FIPS 204 seed. Mode 0600, never
overwritten, refused when others can read it.
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import mldsa
from nacl.signing import SigningKey

from gateway.audit import note, sigtypes
from gateway.keystore import read_secret_file, write_secret_file

Clock = Callable[[], float]
SEED_SIZE = 32
COSIGNATURE_TYPES = (sigtypes.SIG_MLDSA44_COSIGNATURE, sigtypes.SIG_COSIGNATURE_V1)
"""The cosignature types a new witness key file holds, ML-DSA-44 first (the spec's SHOULD)."""


class Cosigner:
    """A timestamped cosigner: a name, a 32-byte seed and a clock."""

    sig_type: int

    def __init__(self, name: str, seed: bytes, clock: Clock = time.time) -> None:
        if not note.is_valid_name(name) or len(name.encode()) > 255:
            raise note.InvalidKey(f"invalid cosigner name {name!r}")
        if len(seed) != SEED_SIZE:
            raise note.InvalidKey("a cosigner seed is 32 bytes")
        self.name = name
        self._seed = seed
        self._clock = clock
        self.public_key = self._public_key()
        self.key_id = sigtypes.key_id(name, self.sig_type, self.public_key)

    def _public_key(self) -> bytes:
        raise NotImplementedError

    def sign_at(self, message: bytes, timestamp: int) -> bytes:
        """The ``timestamped_signature`` of note text ``message`` at ``timestamp``."""
        raise NotImplementedError

    def check_origin(self, origin: str) -> None:
        """Raise :class:`~gateway.audit.note.NoteError` unless this cosigner can sign ``origin``'s checkpoints."""
        if not origin or "\n" in origin:
            raise note.MalformedCheckpoint("a log origin is one non-empty line")

    def sign(self, message: bytes) -> bytes:
        """The ``timestamped_signature`` of note text ``message``, timestamped now."""
        timestamp = int(self._clock())
        if timestamp <= 0:
            raise note.NoteError("the clock gave a cosignature timestamp of zero or less")
        return self.sign_at(message, timestamp)

    @property
    def verifier(self) -> note.Verifier:
        return note.Verifier(self.name, self.key_id, self.public_key, self.sig_type)

    @property
    def verifier_key(self) -> str:
        return self.verifier.vkey

    def private_key(self) -> str:
        """The key in its file encoding. Secret: never log it."""
        key = base64.b64encode(bytes([self.sig_type]) + self._seed).decode()
        return f"{note.PRIVATE_KEY_PREFIX}{self.name}+{self.key_id.hex()}+{key}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.verifier_key[:80]!r})"


class Ed25519Cosigner(Cosigner):
    """Type 0x04: Ed25519 over ``cosignature/v1``, the time line and the whole note text."""

    sig_type = sigtypes.SIG_COSIGNATURE_V1

    def _public_key(self) -> bytes:
        self._key = SigningKey(self._seed)
        return bytes(self._key.verify_key)

    def sign_at(self, message: bytes, timestamp: int) -> bytes:
        signed = sigtypes.cosignature_v1_message(timestamp, message)
        return struct.pack(">Q", timestamp) + self._key.sign(signed).signature


class MLDSA44Cosigner(Cosigner):
    """Type 0x06: ML-DSA-44 over the ``subtree/v1`` message of the checkpoint's [0, size)."""

    sig_type = sigtypes.SIG_MLDSA44_COSIGNATURE

    def _public_key(self) -> bytes:
        self._key = mldsa.MLDSA44PrivateKey.from_seed_bytes(self._seed)
        return self._key.public_key().public_bytes_raw()

    def check_origin(self, origin: str) -> None:
        """``subtree/v1`` names the origin with a one-byte length: at most 255 bytes."""
        super().check_origin(origin)
        if len(origin.encode()) > 255:
            raise note.MalformedCheckpoint(
                "an ML-DSA-44 cosignature names a log origin of at most 255 bytes"
            )

    def sign_at(self, message: bytes, timestamp: int) -> bytes:
        cp = note.parse_checkpoint(message.decode())
        if cp.extensions:
            raise note.MalformedCheckpoint("ML-DSA-44 cosignatures do not sign extension lines")
        try:
            signed = sigtypes.subtree_v1_message(
                self.name, timestamp, cp.origin, 0, cp.size, cp.root
            )
        except ValueError as exc:
            raise note.NoteError(str(exc)) from None
        return struct.pack(">Q", timestamp) + self._key.sign(signed)


_CLASSES: dict[int, type[Cosigner]] = {c.sig_type: c for c in (Ed25519Cosigner, MLDSA44Cosigner)}


def generate_cosigner(name: str, sig_type: int, clock: Clock = time.time) -> Cosigner:
    """A new cosigner of type 0x04 or 0x06 with a random seed."""
    return _cosigner_class(sig_type)(name, secrets.token_bytes(SEED_SIZE), clock)


def _cosigner_class(sig_type: int) -> type[Cosigner]:
    try:
        return _CLASSES[sig_type]
    except KeyError:
        raise note.InvalidKey(
            f"signature type 0x{sig_type:02x} is not a cosignature type"
        ) from None


def cosigner_from_private_key(skey: str, clock: Clock = time.time) -> Cosigner:
    """Parse ``PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)`` for type 0x04 or 0x06."""
    name, hex_id, key = note.split_private_key(skey)
    if not key:
        raise note.InvalidKey("cosigner key is malformed")
    cosigner = _cosigner_class(key[0])(name, key[1:], clock)
    if cosigner.key_id.hex() != hex_id.lower():
        raise note.InvalidKey("cosigner key ID does not match the key")
    return cosigner


def create_cosigner_file(
    path: Path, name: str, types: Iterable[int] = COSIGNATURE_TYPES
) -> list[Cosigner]:
    """Generate one cosigner per type, all named ``name``, into a new file of mode 0600."""
    cosigners = [generate_cosigner(name, t) for t in types]
    if not cosigners:
        raise note.InvalidKey("a cosigner key file needs at least one key")
    write_secret_file(path, "".join(c.private_key() + "\n" for c in cosigners).encode())
    return cosigners


def load_cosigners(path: Path, clock: Clock = time.time) -> list[Cosigner]:
    """The cosigners of a key file: one or more keys, one name, no type twice."""
    text = read_secret_file(path).decode("ascii", "replace")
    lines = [line.strip() for line in text.splitlines()]
    cosigners = [cosigner_from_private_key(line, clock) for line in lines if line]
    if not cosigners:
        raise note.InvalidKey(f"{path} holds no cosigner key")
    if len({c.name for c in cosigners}) != 1:
        raise note.InvalidKey(f"the keys in {path} have different names")
    if len({c.sig_type for c in cosigners}) != len(cosigners):
        raise note.InvalidKey(f"{path} holds two keys of the same type")
    return cosigners
