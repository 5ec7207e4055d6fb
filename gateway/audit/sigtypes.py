"""The signature types of C2SP signed notes: key IDs, signed messages, verification.

Design note, by the section of the C2SP specifications each piece implements:

- c2sp.org/signed-note, "Signatures": one formula for every key ID,
  ``SHA-256(name || 0x0A || type || public key)[:4]`` (:func:`key_id`).
- signed-note, "Ed25519 signatures" (type 0x01): RFC 8032 Ed25519 over the note text.
- c2sp.org/tlog-cosignature, "Format": a cosignature is a ``timestamped_signature``, an
  8-byte big-endian POSIX timestamp (at most 2^63 - 1) and then the signature
  (:func:`cosignature_timestamp`).
- tlog-cosignature, "Ed25519 signed message" (type 0x04): Ed25519 over
  ``cosignature/v1\\ntime <t>\\n`` followed by the whole note text, extension lines included
  (:func:`cosignature_v1_message`).
- tlog-cosignature, "ML-DSA-44 signed message" (type 0x06): FIPS 204 ML-DSA-44 (pure, empty
  context, ``cryptography`` 47 or later) over the ``cosigned_message`` structure: the label
  ``subtree/v1\\n\\0``, the cosigner name and the log origin each with a one-byte length,
  the timestamp, ``start`` and ``end`` as uint64 big-endian, and the 32-byte root
  (:func:`subtree_v1_message`). A checkpoint is the subtree ``[0, size)``; its extension lines
  are not signed.

This module parses no notes and opens no files: :mod:`gateway.audit.note` puts the types in
its table and hands the ML-DSA type the checkpoint parser it needs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Protocol, overload

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
SIG_MLDSA44_COSIGNATURE = 0x06
KEY_ID_SIZE = 4
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = (1 << 63) - 1
ED25519_SIGNATURE_SIZE = 64
MLDSA44_PUBLIC_KEY_SIZE = 1312
MLDSA44_SIGNATURE_SIZE = 2420
SUBTREE_LABEL = b"subtree/v1\n\x00"

CheckpointHead = Callable[[bytes], tuple[str, int, bytes]]
"""Parses a checkpoint note text into (origin, size, root), raising ValueError."""


@overload
def key_id(name: str, public_key: bytes, /) -> bytes: ...
@overload
def key_id(name: str, sig_type: int, public_key: bytes, /) -> bytes: ...
def key_id(name: str, type_or_key: int | bytes, public_key: bytes | None = None, /) -> bytes:
    """signed-note: ``SHA-256(name || 0x0A || type || public key)[:4]``.

    ``key_id(name, public_key)`` is the Ed25519 (type 0x01) key ID.
    """
    if isinstance(type_or_key, bytes):
        sig_type, key = SIG_ED25519, type_or_key
    else:
        assert public_key is not None, "key_id(name, type, public_key)"
        sig_type, key = type_or_key, public_key
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + key).digest()[:KEY_ID_SIZE]


def cosignature_v1_message(timestamp: int, text: str | bytes) -> bytes:
    """tlog-cosignature "Ed25519 signed message": header, time line, then the note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp is out of range")
    body = text.encode() if isinstance(text, str) else text
    return b"cosignature/v1\ntime %d\n" % timestamp + body


def subtree_v1_message(
    cosigner: str, timestamp: int, origin: str, start: int, end: int, root: bytes
) -> bytes:
    """tlog-cosignature "ML-DSA-44 signed message": the ``cosigned_message`` structure."""
    name, log = cosigner.encode(), origin.encode()
    if not 1 <= len(name) <= 255 or not 1 <= len(log) <= 255:
        raise ValueError("cosigner name and log origin must be 1 to 255 bytes")
    if len(root) != 32 or not 0 <= timestamp <= MAX_TIMESTAMP or not 0 <= start <= end:
        raise ValueError("cosigned subtree has a bad hash, timestamp or range")
    if start != 0 and timestamp != 0:
        raise ValueError("a subtree cosignature with start > 0 must have timestamp 0")
    return b"".join(
        (
            SUBTREE_LABEL,
            bytes([len(name)]) + name,
            struct.pack(">Q", timestamp),
            bytes([len(log)]) + log,
            struct.pack(">QQ", start, end),
            root,
        )
    )


def cosignature_timestamp(signature: bytes) -> int:
    """The timestamp of a type 0x04 or 0x06 signature (the bytes after the key ID)."""
    if len(signature) < TIMESTAMP_SIZE:
        raise ValueError("cosignature is too short for its timestamp")
    (timestamp,) = struct.unpack(">Q", signature[:TIMESTAMP_SIZE])
    return int(timestamp)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


class SignatureType(Protocol):
    """What one signature type byte means: its public keys and how its signatures verify."""

    code: int
    label: str
    public_key_size: int
    timestamped: bool

    def verify(self, name: str, public_key: bytes, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` by key ``name``/``public_key`` verifies over note ``text``."""
        ...


class Ed25519Type:
    """Type 0x01: Ed25519 over the note text."""

    code, label, public_key_size, timestamped = SIG_ED25519, "Ed25519", 32, False

    def verify(self, name: str, public_key: bytes, text: bytes, signature: bytes) -> bool:
        return ed25519_verify(public_key, text, signature)


class CosignatureV1Type:
    """Type 0x04: a timestamped Ed25519 cosignature over ``cosignature/v1`` and the text."""

    code, label, public_key_size, timestamped = SIG_COSIGNATURE_V1, "Ed25519 cosignature", 32, True

    def verify(self, name: str, public_key: bytes, text: bytes, signature: bytes) -> bool:
        if len(signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            return False
        timestamp = cosignature_timestamp(signature)
        if timestamp > MAX_TIMESTAMP:
            return False
        message = cosignature_v1_message(timestamp, text)
        return ed25519_verify(public_key, message, signature[TIMESTAMP_SIZE:])


class MLDSA44CosignatureType:
    """Type 0x06: a timestamped ML-DSA-44 cosignature over the checkpoint's subtree [0, size)."""

    code, label, timestamped = SIG_MLDSA44_COSIGNATURE, "ML-DSA-44 cosignature", True
    public_key_size = MLDSA44_PUBLIC_KEY_SIZE

    def __init__(self, checkpoint_head: CheckpointHead) -> None:
        self._head = checkpoint_head

    def verify(self, name: str, public_key: bytes, text: bytes, signature: bytes) -> bool:
        if len(signature) != TIMESTAMP_SIZE + MLDSA44_SIGNATURE_SIZE:
            return False
        try:
            origin, size, root = self._head(text)
            timestamp = cosignature_timestamp(signature)
            message = subtree_v1_message(name, timestamp, origin, 0, size, root)
            key = mldsa.MLDSA44PublicKey.from_public_bytes(public_key)
            key.verify(signature[TIMESTAMP_SIZE:], message)
        except (ValueError, InvalidSignature):
            return False
        return True
