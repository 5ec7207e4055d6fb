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
    try:
        return _age().parse_recipient(recipient)
    except Exception as exc:  # the age module's closed set of errors, whatever its names
        raise AgeKeyError(f"not an age recipient: {recipient[:20]}... ({exc})") from None


def generate_identity() -> tuple[str, str]:
    """A new X25519 identity: (``AGE-SECRET-KEY-1...``, ``age1...``)."""
    identity = _age().X25519Identity.generate()
    return str(identity), str(identity.recipient())


def throwaway_recipient() -> str:
    """A recipient of the upload's kind, to size a header before the upload exists."""
    return generate_identity()[1]


def new_header(file_key: bytes, recipients: list[str]) -> bytes:
    """The age header (MAC line included) wrapping ``file_key`` to every recipient."""
    parsed = [check_recipient(r) for r in recipients]
    return bytes(_age().write_header(file_key, parsed))


def load_identities(path: Path) -> list[Any]:
    """The identities in an age identity file (comments and blank lines skipped)."""
    found = []
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                found.append(_age().parse_identity(line))
            except Exception:
                raise AgeKeyError(f"{path}: not an age identity file") from None
    if not found:
        raise AgeKeyError(f"{path}: no identity in the file")
    return found


def open_header(head: bytes, identities: list[Any]) -> tuple[bytes, int]:
    """Parse the header at the start of ``head``: (file key, header length in bytes)."""
    try:
        return _age().open_header(head, identities)  # type: ignore[no-any-return]
    except Exception as exc:
        raise AgeKeyError(f"cannot open the age header: {exc}") from None
