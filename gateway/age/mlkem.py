"""The hybrid post-quantum recipient type (C2SP age, "The MLKEM768-X25519 (i.e. X-Wing)
hybrid post-quantum recipient type").

Design note. An identity is a 32-byte seed, Bech32 ``AGE-SECRET-KEY-PQ-1...``; it expands
(draft-ietf-hpke-pq, MLKEM768-X25519) with ``SHAKE256(seed, 96)`` into the 64-byte
ML-KEM-768 seed and the 32-byte X25519 secret. The recipient is the ML-KEM-768
encapsulation key followed by the X25519 public key (1216 bytes), Bech32 ``age1pq1...``.
A stanza is ``-> mlkem768x25519 <base64 enc>`` whose body is the HPKE ciphertext of the
file key: SealBase (RFC 9180 s. 6.1) with KEM MLKEM768-X25519, KDF HKDF-SHA256, AEAD
ChaCha20Poly1305, ``info = "age-encryption.org/mlkem768x25519"``, empty aad. Unwrapping
rejects a stanza with other than one argument, an enc that is not the canonical base64
of 1120 bytes, a body that is not 32 bytes or an X25519 share giving the all-zero
secret (HeaderError), and treats a failed open as "not for this identity".
Primitives: ``cryptography``'s HPKE suite, ML-KEM-768 and X25519; hashlib's SHAKE256.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from gateway.age import bech32
from gateway.age._shape import WRAPPED_FILE_KEY_SIZE
from gateway.age.errors import HeaderError, KeyFormatError
from gateway.age.format import Stanza, b64decode, b64encode

STANZA_TYPE = "mlkem768x25519"
IDENTITY_HRP = "AGE-SECRET-KEY-PQ-"
RECIPIENT_HRP = "age1pq"
INFO = b"age-encryption.org/mlkem768x25519"
MLKEM_PUBLIC_SIZE = 1184
MLKEM_CIPHERTEXT_SIZE = 1088
PUBLIC_SIZE = MLKEM_PUBLIC_SIZE + 32
ENC_SIZE = MLKEM_CIPHERTEXT_SIZE + 32
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class HybridRecipient:
    """An ``age1pq1...`` public key: ``wrap`` makes one mlkem768x25519 stanza."""

    def __init__(self, public: bytes) -> None:
        if len(public) != PUBLIC_SIZE:
            raise KeyFormatError(f"a hybrid recipient is {PUBLIC_SIZE} bytes")
        self.public = bytes(public)
        try:
            pq = mlkem.MLKEM768PublicKey.from_public_bytes(self.public[:MLKEM_PUBLIC_SIZE])
            classic = x25519.X25519PublicKey.from_public_bytes(self.public[MLKEM_PUBLIC_SIZE:])
        except ValueError:
            raise KeyFormatError("the hybrid recipient's ML-KEM key is invalid") from None
        self._key = hpke.MLKEM768X25519PublicKey(pq, classic)

    @classmethod
    def parse(cls, text: str) -> HybridRecipient:
        hrp, data = bech32.decode(text)
        if hrp != RECIPIENT_HRP:
            raise KeyFormatError(f"not a hybrid recipient (prefix {hrp!r})")
        return cls(data)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        try:
            sealed = _SUITE.encrypt(file_key, self._key, info=INFO)
        except ValueError:  # cryptography refuses an X25519 share that is a low-order point
            raise KeyFormatError("the hybrid recipient's X25519 key is a low-order point") from None
        enc, body = sealed[:ENC_SIZE], sealed[ENC_SIZE:]
        return [Stanza(STANZA_TYPE, (b64encode(enc),), body)]

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public)

    def __repr__(self) -> str:
        return f"HybridRecipient({str(self)[:24]}...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HybridRecipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)


class HybridIdentity:
    """An ``AGE-SECRET-KEY-PQ-1...`` seed: ``unwrap`` opens mlkem768x25519 stanzas."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeyFormatError("a hybrid identity is a 32-byte seed")
        self._seed = bytes(seed)
        expanded = hashlib.shake_256(self._seed).digest(96)
        self._pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        self._classic = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
        self._key = hpke.MLKEM768X25519PrivateKey(self._pq, self._classic)

    @classmethod
    def generate(cls) -> HybridIdentity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> HybridIdentity:
        hrp, data = bech32.decode(text)
        if hrp != IDENTITY_HRP:
            raise KeyFormatError("not a hybrid identity")
        return cls(data)

    def to_recipient(self) -> HybridRecipient:
        public = (
            self._pq.public_key().public_bytes_raw() + self._classic.public_key().public_bytes_raw()
        )
        return HybridRecipient(public)

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from the first mlkem768x25519 stanza addressed to us, or None."""
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("malformed mlkem768x25519 stanza: it takes exactly one argument")
            enc = b64decode(stanza.args[0], "mlkem768x25519 enc")
            if len(enc) != ENC_SIZE:
                raise HeaderError(f"malformed mlkem768x25519 stanza: enc is not {ENC_SIZE} bytes")
            if len(stanza.body) != WRAPPED_FILE_KEY_SIZE:
                raise HeaderError("malformed mlkem768x25519 stanza: the body is not 32 bytes")
            try:
                self._classic.exchange(
                    x25519.X25519PublicKey.from_public_bytes(enc[MLKEM_CIPHERTEXT_SIZE:])
                )
            except ValueError:
                raise HeaderError("mlkem768x25519 stanza with a low-order X25519 share") from None
            try:
                return _SUITE.decrypt(enc + stanza.body, self._key, info=INFO)
            except (InvalidTag, ValueError):
                continue
        return None

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self._seed)

    def __repr__(self) -> str:
        return "HybridIdentity(<secret>)"
