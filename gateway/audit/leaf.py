"""The audit entry format: the exact bytes of one Merkle leaf.

An entry is a JSON object with exactly the fields of :data:`LEAF_FIELDS`, written as
canonical JSON (keys sorted, no whitespace, UTF-8, no NaN), the same canonical form as the
upload manifests. Times are RFC 3339 in UTC with a ``Z`` suffix. The leaf bytes are what the
tree hashes (RFC 9162 §2.1.1), so this encoding is part of the log's format: changing it is
a breaking change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

LEAF_FIELDS = (
    "index",
    "time",
    "actor",
    "org",
    "role",
    "action",
    "artifact",
    "grant",
    "outcome",
    "request_id",
    "ip",
    "details",
)


class LeafError(ValueError):
    """Bytes that are not a well-formed audit entry."""


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, NaN and infinities refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def utc_naive(t: datetime) -> datetime:
    """``t`` as a naive UTC datetime (aware times are converted; naive ones are taken as UTC)."""
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def rfc3339(t: datetime) -> str:
    """``2026-11-26T12:00:00Z``, with microseconds only when there are some."""
    t = utc_naive(t)
    frac = f".{t.microsecond:06d}" if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def encode_leaf(
    *,
    index: int,
    time: datetime,
    actor: str,
    org: str,
    role: str,
    action: str,
    artifact: str | None,
    grant: str | None,
    outcome: str,
    request_id: str | None,
    ip: str | None,
    details: dict[str, Any],
) -> bytes:
    """The leaf bytes of one entry."""
    return canonical_json(
        {
            "index": index,
            "time": rfc3339(time),
            "actor": actor,
            "org": org,
            "role": role,
            "action": action,
            "artifact": artifact,
            "grant": grant,
            "outcome": outcome,
            "request_id": request_id,
            "ip": ip,
            "details": details,
        }
    )


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes, refusing anything that :func:`encode_leaf` could not have written."""
    try:
        entry = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise LeafError("entry is not UTF-8 JSON") from None
    if not isinstance(entry, dict) or sorted(entry) != sorted(LEAF_FIELDS):
        raise LeafError("entry does not have exactly the audit fields")
    if (
        not isinstance(entry["index"], int)
        or isinstance(entry["index"], bool)
        or entry["index"] < 0
    ):
        raise LeafError("entry index is not a non-negative integer")
    try:
        canonical = canonical_json(entry)
    except ValueError:
        raise LeafError("entry is not canonical JSON") from None
    if canonical != leaf:
        raise LeafError("entry is not canonical JSON")
    return entry
