"""The audit entry format: the exact bytes of one Merkle leaf, and what is derived from them.

An entry is a JSON object written as canonical JSON (:func:`gateway.canonical.canonical_json`:
keys sorted, no whitespace, UTF-8, no NaN), the same encoding as the signed upload manifests.
Times are RFC 3339 in UTC with a ``Z`` suffix and microseconds when there are some
(:func:`gateway.clock.rfc3339_micro`). The leaf bytes are what the tree hashes (RFC 9162
§2.1.1), so this encoding is part of the log's format: changing it is a breaking change.

Two versions are read; only the second is written.

- **v1** (:data:`V1_FIELDS`): no ``v`` field. The org an entry's artifact belongs to was
  kept beside the leaf, in the database only, so nothing a reader can check said whom it
  concerned.
- **v2** (:data:`V2_FIELDS`): ``"v": 2``, ``subject_org`` (the org that owns what the entry
  is about: the artifact's lab, the org whose identity changed) and ``prev``. Every field the
  gateway scopes or filters on is in the leaf, and the database's filter columns are
  :func:`columns` of it.

Chains. The orgs an entry *concerns* are :func:`concerns` of its leaf: the actor's org and
``subject_org``; a refusal answered 404 (``details.reason`` ``hidden``) concerns only
``subject_org``, since telling the actor's org who owns the hidden object would leak what
the 404 hides; an ``audit.heads`` entry concerns the org it pins (see Heads). ``prev`` maps
each org the entry concerns to the index of the previous entry concerning that org (None for
its first v2 entry), so each org's entries form a chain a reader follows back from any of
them. :func:`link` computes ``prev`` from the per-org heads before the entry, and nothing
else. An entry that concerns two orgs shows each of them the index of the other's previous
entry (an index only: that entry is not the viewer's to read).

Heads. At each checkpoint publication the gateway appends a *run* of ``audit.heads``
entries, one per org that has entries, in org name order, with nothing between them: the
one for org O has ``subject_org`` O, concerns O alone and has ``prev`` ``{O: O's latest
index}``. It pins O's chain at that point: any later entry of O links back to it (directly
or through later entries of O), so hiding it from O breaks O's chain, and an org that
follows its chain back from its newest heads entry has seen every entry about it up to
there. No org's heads entry names another org. Logs written before held one *shared*
heads entry per publication (:func:`shared_heads`: ``subject_org`` null, concerning every
org it lists, ``prev`` every org's latest index); they are still read and verified.

Size. A leaf is at most :data:`MAX_ENTRY_SIZE` bytes (C2SP tlog-tiles entry bundles carry a
16-bit length): :func:`encode_leaf` refuses a larger one with :class:`EntryTooLarge`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gateway.audit.tiles import MAX_ENTRY_SIZE
from gateway.canonical import canonical_json
from gateway.clock import rfc3339_micro, utc_naive

__all__ = [
    "COLUMNS",
    "HEADS_ACTION",
    "HIDDEN",
    "MAX_ENTRY_SIZE",
    "V1_FIELDS",
    "V2_FIELDS",
    "VERSION",
    "EntryTooLarge",
    "LeafError",
    "canonical_json",
    "columns",
    "concerns",
    "decode_leaf",
    "encode_leaf",
    "encode_leaf_v1",
    "link",
    "shared_heads",
    "utc_naive",
    "version",
]

VERSION = 2
"""The leaf version :func:`encode_leaf` writes."""

HEADS_ACTION = "audit.heads"
"""The action of the entries that pin each org's latest index at a publication."""

HIDDEN = "hidden"
"""``details.reason`` of a refusal answered 404: the object's existence is not the actor's to know."""

V1_FIELDS = (
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
V2_FIELDS = (*V1_FIELDS, "v", "subject_org", "prev")

COLUMNS = (
    "time",
    "actor",
    "org",
    "role",
    "action",
    "artifact",
    "grant",
    "subject_org",
    "outcome",
    "request_id",
)
"""The fields the database keeps beside the leaf, to filter and scope on (:func:`columns`)."""

_TEXT = ("actor", "org", "role", "action", "outcome")
_OPTIONAL_TEXT = ("artifact", "grant", "subject_org", "request_id", "ip")


class LeafError(ValueError):
    """Bytes that are not a well-formed audit entry."""


class EntryTooLarge(LeafError):
    """An entry whose leaf would be larger than :data:`MAX_ENTRY_SIZE` bytes."""


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
    subject_org: str | None,
    outcome: str,
    request_id: str | None,
    ip: str | None,
    details: dict[str, Any],
    prev: Mapping[str, int | None],
) -> bytes:
    """The v2 leaf bytes of one entry; :class:`EntryTooLarge` past :data:`MAX_ENTRY_SIZE`."""
    leaf = canonical_json(
        {
            "v": VERSION,
            "index": index,
            "time": rfc3339_micro(time),
            "actor": actor,
            "org": org,
            "role": role,
            "action": action,
            "artifact": artifact,
            "grant": grant,
            "subject_org": subject_org,
            "outcome": outcome,
            "request_id": request_id,
            "ip": ip,
            "details": details,
            "prev": dict(prev),
        }
    )
    if len(leaf) > MAX_ENTRY_SIZE:
        raise EntryTooLarge(
            f"the audit entry for {action} would be {len(leaf)} bytes, "
            f"more than the log's limit of {MAX_ENTRY_SIZE}"
        )
    return leaf


def encode_leaf_v1(
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
    """The v1 leaf bytes of one entry: what logs written before v2 hold (never written now)."""
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
    """Parse leaf bytes of either version, refusing anything the log could not have written."""
    try:
        entry = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise LeafError("entry is not UTF-8 JSON") from None
    if not isinstance(entry, dict):
        raise LeafError("entry is not a JSON object")
    fields = sorted(entry)
    if fields not in (sorted(V1_FIELDS), sorted(V2_FIELDS)):
        raise LeafError("entry does not have exactly the audit fields of a version")
    if not _natural(entry["index"]):
        raise LeafError("entry index is not a non-negative integer")
    if fields == sorted(V2_FIELDS):
        if type(entry["v"]) is not int or entry["v"] != VERSION:
            raise LeafError(f"entry version is {entry['v']!r}, not {VERSION}")
        _check_v2(entry)
    try:
        canonical = canonical_json(entry)
    except ValueError:
        raise LeafError("entry is not canonical JSON") from None
    if canonical != leaf:
        raise LeafError("entry is not canonical JSON")
    return entry


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_v2(entry: dict[str, Any]) -> None:
    for name in _TEXT:
        if not isinstance(entry[name], str):
            raise LeafError(f"entry field {name} is not a string")
    for name in _OPTIONAL_TEXT:
        if entry[name] is not None and not isinstance(entry[name], str):
            raise LeafError(f"entry field {name} is neither a string nor null")
    if not isinstance(entry["details"], dict):
        raise LeafError("entry details are not an object")
    _parse_time(entry["time"])
    prev = entry["prev"]
    if not isinstance(prev, dict):
        raise LeafError("entry prev is not an object")
    index = entry["index"]
    for org, at in prev.items():
        if at is not None and not (_natural(at) and at < index):
            raise LeafError(f"entry prev of {org} is not the index of an earlier entry")
    if not shared_heads(entry) and sorted(prev) != list(concerns(entry)):
        raise LeafError("entry prev does not name exactly the orgs the entry concerns")


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise LeafError("entry time is not an RFC 3339 UTC time")
    try:
        when = datetime.fromisoformat(text[:-1])
    except ValueError:
        raise LeafError("entry time is not an RFC 3339 UTC time") from None
    if when.tzinfo is not None or rfc3339_micro(when) != text:
        raise LeafError("entry time is not in the log's own RFC 3339 form")
    return when


def version(entry: Mapping[str, Any]) -> int:
    """The version of a decoded entry: 1 or 2."""
    return VERSION if "v" in entry else 1


def concerns(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """The orgs a decoded v2 entry concerns, sorted (see the top of this module); () for v1."""
    if version(entry) == 1:
        return ()
    subject = entry["subject_org"]
    if entry["action"] == HEADS_ACTION:  # its own org's alone, unless shared (old logs)
        return (subject,) if subject is not None else tuple(sorted(entry["prev"]))
    details = entry["details"]
    hidden = entry["outcome"] == "denied" and details.get("reason") == HIDDEN
    orgs = {subject} if hidden else {entry["org"], subject}
    return tuple(sorted(o for o in orgs if o is not None))


def shared_heads(entry: Mapping[str, Any]) -> bool:
    """Whether a decoded v2 entry is a shared heads entry (every org's latest index, old logs)."""
    return entry["action"] == HEADS_ACTION and entry["subject_org"] is None


def link(heads: Mapping[str, int], concerned: Iterable[str]) -> dict[str, int | None]:
    """``prev`` of a new entry: for each org it concerns, that org's head before it (or None).

    ``heads`` maps an org to the index of the latest entry concerning it. The caller then
    moves each concerned org's head to the new entry's index, in the same transaction.
    """
    return {org: heads.get(org) for org in sorted(set(concerned))}


def columns(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The filter columns of a decoded entry (:data:`COLUMNS`; ``time`` as a naive UTC datetime).

    The log writes its columns with this function and a verifier re-derives them with it. A
    v1 entry has no ``subject_org`` in its leaf, so its columns lack that one.
    """
    out = {name: entry[name] for name in COLUMNS if name in entry}
    out["time"] = _parse_time(entry["time"])
    return out
