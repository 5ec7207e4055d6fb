"""The audit entry format: the exact bytes of one Merkle leaf.

An entry is a JSON object with exactly the fields of :data:`LEAF_FIELDS`, written as
canonical JSON (:func:`gateway.canonical.canonical_json`: keys sorted, no whitespace,
UTF-8, no NaN), the same encoding as the signed upload manifests. Times are RFC 3339 in
UTC with a ``Z`` suffix and microseconds when there are some
(:func:`gateway.clock.rfc3339_micro`). The leaf bytes are what the tree hashes (RFC 9162
§2.1.1), so this encoding is part of the log's format: changing it is a breaking change.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway.canonical import canonical_json
from gateway.clock import rfc3339_micro, utc_naive

__all__ = ["LEAF_FIELDS", "LeafError", "canonical_json", "decode_leaf", "encode_leaf", "utc_naive"]

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
            "time": rfc3339_micro(time),
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
