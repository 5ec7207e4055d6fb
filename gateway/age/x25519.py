"""The X25519 recipient type (C2SP age, "The X25519 recipient type").

Design note. An identity is 32 random bytes, Bech32 ``AGE-SECRET-KEY-1...``; its
recipient is ``X25519(identity, basepoint)``, Bech32 ``age1...``. A stanza is
``-> X25519 <ephemeral share>`` with body ``ChaCha20-Poly1305(wrap key, file key)``
(nonce of 12 zero bytes), where ``wrap key = HKDF-SHA-256(ikm = shared secret,
salt = share || recipient, info = "age-encryption.org/v1/X25519")``. Unwrapping ignores
stanzas of other types, rejects malformed ones (argument count, a share that is not the
canonical base64 of 32 bytes, a body that is not 32 bytes, an all-zero shared secret)
with HeaderError, and treats a failed AEAD open as "not for this identity".
Primitives: ``cryptography``'s X25519, HKDF and ChaCha20Poly1305.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.age import bech32
from gateway.age._shape import FILE_KEY_SIZE as FILE_KEY_SIZE  # re-exported
from gateway.age._shape import WRAPPED_FILE_KEY_SIZE
from gateway.age.errors import HeaderError, KeyFormatError
from gateway.age.format import Stanza, b64decode, b64encode

STANZA_TYPE = "X25519"
IDENTITY_HRP = "AGE-SECRET-KEY-"
RECIPIENT_HRP = "age"
_INFO = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)


def _wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=share + recipient, info=_INFO).derive(
        shared
    )


class X25519Recipient:
    """An ``age1...`` public key: ``wrap`` makes one X25519 stanza for a file key."""

    def __init__(self, public: bytes) -> None:
        if len(public) != 32:
            raise KeyFormatError("an X25519 recipient is 32 bytes")
        self.public = bytes(public)
        self._key = X25519PublicKey.from_public_bytes(self.public)

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        hrp, data = bech32.decode(text)
        if hrp != RECIPIENT_HRP:
            raise KeyFormatError(f"not an X25519 recipient (prefix {hrp!r})")
        return cls(data)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        try:
            shared = ephemeral.exchange(self._key)
        except ValueError:
            raise KeyFormatError("the X25519 recipient is a low-order point") from None
        body = ChaCha20Poly1305(_wrap_key(shared, share, self.public)).encrypt(
            _ZERO_NONCE, file_key, None
        )
        return [Stanza(STANZA_TYPE, (b64encode(share),), body)]

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public)

    def __repr__(self) -> str:
        return f"X25519Recipient({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)


class X25519Identity:
    """An ``AGE-SECRET-KEY-1...`` secret key: ``unwrap`` opens X25519 stanzas for it."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise KeyFormatError("an X25519 identity is 32 bytes")
        self._secret = bytes(secret)
        self._key = X25519PrivateKey.from_private_bytes(self._secret)
        self._public = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        hrp, data = bech32.decode(text)
        if hrp != IDENTITY_HRP:
            raise KeyFormatError("not an X25519 identity")
        return cls(data)

    def to_recipient(self) -> X25519Recipient:
        return X25519Recipient(self._public)

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from the first X25519 stanza addressed to us, or None."""
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("malformed X25519 stanza: it takes exactly one argument")
            share = b64decode(stanza.args[0], "X25519 share")
            if len(share) != 32:
                raise HeaderError("malformed X25519 stanza: the share is not 32 bytes")
            if len(stanza.body) != WRAPPED_FILE_KEY_SIZE:
                raise HeaderError("malformed X25519 stanza: the body is not 32 bytes")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise HeaderError("X25519 stanza with a low-order share") from None
            aead = ChaCha20Poly1305(_wrap_key(shared, share, self._public))
            try:
                return aead.decrypt(_ZERO_NONCE, stanza.body, None)
            except InvalidTag:
                continue
        return None

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self._secret)

    def __repr__(self) -> str:
        return f"X25519Identity(<{str(self.to_recipient())}>)"
