"""Gateway-signed download URLs: an HMAC-SHA256 over what the URL grants, checked in constant time.

The signed message is domain-separated and has fixed fields, one per line (no field may
hold a newline: ids are ``[a-z0-9_]``, the expiry is decimal), so no two URLs share a
signature: ``gateway-download-v1``, the artifact id, the grant id, the expiry (Unix
seconds). The signature is URL-safe base64 without padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

DOMAIN = "gateway-download-v1"


def sign(key: bytes, artifact_id: str, grant_id: str, expires: int) -> str:
    """The signature of a URL of ``artifact_id`` under ``grant_id`` valid until ``expires``."""
    message = f"{DOMAIN}\n{artifact_id}\n{grant_id}\n{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify(key: bytes, artifact_id: str, grant_id: str, expires: int, signature: str) -> bool:
    """Whether ``signature`` is this URL's (compared in constant time)."""
    good = sign(key, artifact_id, grant_id, expires)
    return hmac.compare_digest(good.encode(), signature.encode())


def unix(t: datetime) -> int:
    """A naive UTC time as Unix seconds (a URL's expiry)."""
    return int(t.replace(tzinfo=UTC).timestamp())
