"""The few age header operations the client needs, on :mod:`gateway.age`.

A push writes the header itself (its own file key, so a resumed push reproduces the
same ciphertext); a pull reads the header the gateway made for the evaluator and
unwraps the file key with the evaluator's identity, checking the header MAC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway import age
from gateway.age.format import Readable
from gateway.client.errors import AgeKeyError

Identities = Sequence[age.Identity]


def check_recipient(recipient: str) -> age.X25519Recipient | age.HybridRecipient:
    """The parsed ``age1...`` recipient; :class:`AgeKeyError` when it is not one."""
    try:
        return age.parse_recipient(recipient)
    except age.AgeError as exc:
        raise AgeKeyError(f"not an age recipient: {recipient[:20]}... ({exc})") from None


def generate_identity() -> tuple[str, str]:
    """A new X25519 identity: (``AGE-SECRET-KEY-1...``, ``age1...``)."""
    identity = age.X25519Identity.generate()
    return str(identity), str(identity.to_recipient())


def throwaway_recipient() -> str:
    """A recipient of the upload's kind, to size a header before the upload exists."""
    return generate_identity()[1]


def new_header(file_key: bytes, recipients: list[str]) -> bytes:
    """The age header (MAC line included) wrapping ``file_key`` to every recipient."""
    parsed = [check_recipient(r) for r in recipients]
    try:
        return bytes(age.wrap_file_key(file_key, parsed))
    except age.AgeError as exc:
        raise AgeKeyError(f"cannot write the age header: {exc}") from None


def load_identities(path: Path) -> list[age.X25519Identity | age.HybridIdentity]:
    """The identities in an age identity file (:func:`gateway.age.parse_identities`)."""
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise AgeKeyError(f"{path}: not an age identity file (not UTF-8 text)") from None
    try:
        return age.parse_identities(text)
    except age.KeyFormatError as exc:
        raise AgeKeyError(f"{path}: not an age identity file ({exc})") from None


def open_header(src: Readable, identities: Identities, max_size: int) -> tuple[bytes, int]:
    """Read the header at the start of ``src`` (a binary file object, left just past it):
    (file key, header length in bytes)."""
    try:
        header = age.read_header(src, max_size=max_size)
        file_key = age.unwrap_file_key(header, identities)
    except age.NoIdentityMatchError:
        raise AgeKeyError(
            "no identity matched the file: is your registered recipient the one in this "
            "identity file?"
        ) from None
    except age.AgeError as exc:
        raise AgeKeyError(f"the age header does not open: {exc}") from None
    return bytes(file_key), len(header.raw)
