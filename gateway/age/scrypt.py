"""The scrypt passphrase recipient type (C2SP age, "The scrypt recipient type").

Design note. A stanza is ``-> scrypt <base64 16-byte salt> <log2 work factor>`` with body
``ChaCha20-Poly1305(wrap key, file key)`` (nonce of 12 zero bytes), where
``wrap key = scrypt(N = 2**work factor, r = 8, p = 1, dkLen = 32,
S = "age-encryption.org/v1/scrypt" || salt, P = passphrase)``. The work factor must be
``^[1-9][0-9]*$`` (anything else is a malformed stanza) and at most ``max_work_factor``
(22 by default: about 4 GiB and seconds of work, the same ceiling as the reference
implementation); a well-formed factor above it, however many digits, is refused as over
the limit. An scrypt stanza
must be the only stanza of its header; a header that mixes it with others is refused.
Primitives: ``cryptography``'s Scrypt and ChaCha20Poly1305.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.age._shape import WRAPPED_FILE_KEY_SIZE
from gateway.age.errors import HeaderError, UsageError
from gateway.age.format import Stanza, b64decode, b64encode

STANZA_TYPE = "scrypt"
_SALT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)
_WORK_FACTOR = re.compile(r"[1-9][0-9]*")
DEFAULT_WORK_FACTOR = 18
MAX_WORK_FACTOR = 22


def _passphrase(passphrase: str | bytes) -> bytes:
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise UsageError("the passphrase is empty")
    return data


def _wrap_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=_SALT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    try:
        return kdf.derive(passphrase)
    except (MemoryError, ValueError):
        raise UsageError(f"not enough memory for scrypt work factor {work_factor}") from None


class ScryptRecipient:
    """Encrypts to a passphrase; must be the only recipient of a file."""

    def __init__(self, passphrase: str | bytes, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        if not 1 <= work_factor <= MAX_WORK_FACTOR:
            raise UsageError(f"the scrypt work factor must be between 1 and {MAX_WORK_FACTOR}")
        self._passphrase = _passphrase(passphrase)
        self.work_factor = work_factor

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(16)
        key = _wrap_key(self._passphrase, salt, self.work_factor)
        body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
        return [Stanza(STANZA_TYPE, (b64encode(salt), str(self.work_factor)), body)]

    def __repr__(self) -> str:
        return f"ScryptRecipient(work_factor={self.work_factor})"


class ScryptIdentity:
    """Decrypts files encrypted to a passphrase."""

    def __init__(self, passphrase: str | bytes, max_work_factor: int = MAX_WORK_FACTOR) -> None:
        self._passphrase = _passphrase(passphrase)
        self.max_work_factor = max_work_factor

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key if the header's only stanza is scrypt and opens, else None."""
        if not any(s.type == STANZA_TYPE for s in stanzas):
            return None
        if len(stanzas) != 1:
            raise HeaderError("an scrypt stanza must be the only stanza in the header")
        stanza = stanzas[0]
        if len(stanza.args) != 2:
            raise HeaderError("malformed scrypt stanza: it takes exactly two arguments")
        salt = b64decode(stanza.args[0], "scrypt salt")
        if len(salt) != 16:
            raise HeaderError("malformed scrypt stanza: the salt is not 16 bytes")
        work_factor = self._work_factor(stanza.args[1])
        if len(stanza.body) != WRAPPED_FILE_KEY_SIZE:
            raise HeaderError("malformed scrypt stanza: the body is not 32 bytes")
        key = _wrap_key(self._passphrase, salt, work_factor)
        try:
            return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None

    def _work_factor(self, arg: str) -> int:
        if not _WORK_FACTOR.fullmatch(arg):
            raise HeaderError("malformed scrypt stanza: invalid work factor")
        # Compare the length first: int() refuses strings of thousands of digits.
        if len(arg) > len(str(self.max_work_factor)) or int(arg) > self.max_work_factor:
            shown = arg if len(arg) <= 20 else arg[:20] + "..."
            raise HeaderError(
                f"scrypt work factor {shown} is above the limit of {self.max_work_factor}"
            )
        return int(arg)

    def __repr__(self) -> str:
        return "ScryptIdentity(<passphrase>)"
