"""The few age header operations the client needs, on :mod:`gateway.age`.

A push writes the header itself (its own file key, so a resumed push reproduces the
same ciphertext); a pull reads the header the gateway made for the evaluator and
unwraps the file key with the evaluator's identity, checking the header MAC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.errors import GatewayError


class AgeKeyError(GatewayError):
    status, slug, title = 400, "age", "age"


def _age() -> Any:
    from gateway import age

    return age


def check_recipient(recipient: str) -> Any:
    age = _age()
    try:
        return age.parse_recipient(recipient)
    except age.AgeError as exc:
        raise AgeKeyError(f"not an age recipient: {recipient[:20]}... ({exc})") from None


def generate_identity() -> tuple[str, str]:
    """A new X25519 identity: (``AGE-SECRET-KEY-1...``, ``age1...``)."""
    from gateway.age.x25519 import X25519Identity

    identity = X25519Identity.generate()
    return str(identity), str(identity.to_recipient())


def throwaway_recipient() -> str:
    """A recipient of the upload's kind, to size a header before the upload exists."""
    return generate_identity()[1]


def new_header(file_key: bytes, recipients: list[str]) -> bytes:
    """The age header (MAC line included) wrapping ``file_key`` to every recipient."""
    age = _age()
    parsed = [check_recipient(r) for r in recipients]
    try:
        return bytes(age.wrap_file_key(file_key, parsed))
    except age.AgeError as exc:
        raise AgeKeyError(f"cannot write the age header: {exc}") from None


def load_identities(path: Path) -> list[Any]:
    """The identities in an age identity file (comments and blank lines skipped)."""
    age = _age()
    found = []
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                found.append(age.parse_identity(line))
            except age.AgeError:
                raise AgeKeyError(f"{path}: not an age identity file") from None
    if not found:
        raise AgeKeyError(f"{path}: no identity in the file")
    return found


def open_header(src: Any, identities: list[Any], max_size: int) -> tuple[bytes, int]:
    """Read the header at the start of ``src`` (a binary file object, left just past it):
    (file key, header length in bytes)."""
    age = _age()
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
