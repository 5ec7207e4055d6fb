"""Proving a filtered view of the log: one org's view complete, every filtered list faithful.

Design note. The gateway serves filtered lists of entries (a lab's or an agency's own, or an
auditor's ``?action=``); the lists come from database columns, which nobody can verify, while
the leaves come with inclusion proofs, which everybody can. Two checks bind the first to the
second, from the leaves alone:

- :func:`check_org_view`, what ``gateway audit mine`` runs: every entry served as concerning
  an org is in the checkpoint's tree (RFC 9162 §2.1.3.2 inclusion proof), is the entry its
  leaf says, and concerns that org (:func:`gateway.audit.leaf.concerns`); then the org's chain
  (each v2 leaf's ``prev``) is followed back from the newest served entry, through the newest
  ``audit.heads`` entry served (the org's own, or a shared one of an older log), to the chain's start (or to the heads entry of an earlier
  checkpoint), and every link must have been served and every served entry be a link. An
  entry named by a link but not served is *missing*; one served but not the org's is
  *foreign*; one whose proof, fields or links do not fit is *inconsistent*. Completeness is
  proven up to the newest heads entry: entries after it are linked to it, but a later one
  could still be held back until the next heads entry.
- :class:`Memberships`, what ``gateway audit verify`` adds online: while it reads every leaf,
  the index of each entry under each filter value it derives (``concerning``, ``action``,
  ``artifact``, ``actor``); the filtered list the gateway serves for a value must then be
  exactly those indexes (:func:`compare`), naming the first that is not.
"""

from __future__ import annotations

import base64
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.audit import merkle
from gateway.audit.leaf import HEADS_ACTION, LeafError, concerns, decode_leaf, version
from gateway.audit.note import Checkpoint


@dataclass(frozen=True)
class Served:
    """One entry as the gateway served it: index, leaf bytes, the entry as listed, its proof."""

    index: int
    leaf: bytes
    listed: Mapping[str, Any] | None
    proof: list[bytes]


@dataclass(frozen=True)
class ViewVerdict:
    """The outcome of :func:`check_org_view`; ``bad_index`` names the entry that failed."""

    ok: bool
    message: str
    bad_index: int | None = None
    entries: int = 0
    complete_to: int | None = None

    def line(self) -> str:
        return self.message if self.ok else f"FAILED: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "bad_index": self.bad_index,
            "entries": self.entries,
            "complete_to": self.complete_to,
        }


class _Bad(Exception):
    def __init__(self, index: int | None, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def _admit(org: str, cp: Checkpoint, item: Served, last: int) -> dict[str, Any]:
    """The decoded entry of ``item`` once it is shown to be in the tree and about ``org``."""
    i = item.index
    if not last < i < cp.size:
        raise _Bad(i, f"entry {i} is inconsistent: served out of order or past size {cp.size}")
    try:
        merkle.verify_inclusion(i, cp.size, merkle.leaf_hash(item.leaf), item.proof, cp.root)
    except (merkle.ProofError, ValueError):
        raise _Bad(i, f"entry {i} is inconsistent: its inclusion proof does not verify") from None
    try:
        entry = decode_leaf(item.leaf)
    except LeafError as exc:
        raise _Bad(i, f"entry {i} is inconsistent: {exc}") from None
    if entry["index"] != i:
        raise _Bad(i, f"entry {i} is inconsistent: its leaf says index {entry['index']}")
    if item.listed is not None and dict(item.listed) != entry:
        raise _Bad(i, f"entry {i} is inconsistent: it is listed unlike its leaf")
    if version(entry) > 1 and org not in concerns(entry):
        whose = ", ".join(concerns(entry)) or "no organisation"
        raise _Bad(
            i, f"entry {i} is foreign: served as concerning {org}, its leaf concerns {whose}"
        )
    return entry


def _walk(org: str, chained: Mapping[int, dict[str, Any]], stop: int | None) -> set[int]:
    """The indexes on ``org``'s chain from the newest served entry back to its start or ``stop``."""
    seen: set[int] = set()
    at: int | None = max(chained)
    while at is not None:
        seen.add(at)
        if at == stop:
            return seen
        back = chained[at]["prev"][org]
        if back is not None and back not in chained:
            raise _Bad(
                back,
                f"entry {back} is missing: entry {at} names it as the previous entry "
                f"concerning {org}, and it was not served",
            )
        if stop is not None and back is not None and back < stop:
            raise _Bad(at, f"entry {at} is inconsistent: {org}'s chain skips heads entry {stop}")
        at = back
    if stop is not None:
        raise _Bad(stop, f"entry {stop} is inconsistent: {org}'s chain starts after it")
    return seen


def check_org_view(
    org: str, cp: Checkpoint, served: Iterable[Served], since: int | None = None
) -> ViewVerdict:
    """Check the entries served as concerning ``org`` against the verified checkpoint ``cp``.

    ``since``: the size of an earlier checkpoint; the chain is then followed back only to the
    newest heads entry below it. See the module note for what is proven.
    """
    chained: dict[int, dict[str, Any]] = {}
    v1 = 0
    last = -1
    try:
        for item in served:
            entry = _admit(org, cp, item, last)
            last = item.index
            if version(entry) == 1:
                v1 += 1
            else:
                chained[item.index] = entry
        heads = [i for i, e in chained.items() if e["action"] == HEADS_ACTION]
        if not heads:
            raise _Bad(None, f"no heads entry below size {cp.size} names {org}: nothing to prove")
        newest = max(heads)
        stop = None
        if since is not None:
            earlier = [i for i in heads if i < since]
            if not earlier:
                raise _Bad(None, f"no heads entry below the earlier size {since} names {org}")
            stop = max(earlier)
        on_chain = _walk(org, chained, stop)
        floor = -1 if stop is None else stop
        skipped = sorted(i for i in chained if i > floor and i not in on_chain)
        if skipped:
            raise _Bad(
                skipped[0], f"entry {skipped[0]} is inconsistent: {org}'s chain does not reach it"
            )
    except _Bad as bad:
        return ViewVerdict(False, bad.message, bad.index)
    counted = sum(1 for i in on_chain if chained[i]["action"] != HEADS_ACTION)
    notes = [f"ok: {counted} entries about {org}, chain complete to index {newest}"]
    later = sum(1 for i in on_chain if i > newest)
    if later:
        notes.append(f"{later} later entries linked to it, until the next heads entry")
    if stop is not None:
        notes.append(f"from heads entry {stop}")
    if v1 and stop is None:
        notes.append(f"{v1} v1 entries before the chain, which carry none")
    return ViewVerdict(True, "; ".join(notes), None, counted, newest)


# --- filtered lists, for an auditor who reads every leaf ------------------------------------

FILTERS = ("concerning", "action", "artifact", "actor")
"""The filters of ``GET /v1/audit/entries`` that a reader of the leaves can re-derive."""


def derived(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    """The values under which each filter must list ``entry`` (a v1 entry: not ``concerning``)."""
    out: dict[str, list[str]] = {
        "action": [entry["action"]],
        "actor": [entry["actor"]],
        "artifact": [entry["artifact"]] if entry["artifact"] is not None else [],
    }
    if version(entry) > 1:
        out["concerning"] = list(concerns(entry))
    return out


class Memberships:
    """For each filter and value, the indexes of the entries it must list (8 bytes each)."""

    def __init__(self) -> None:
        self.indexes: dict[tuple[str, str], array[int]] = {}
        self.v1: set[int] = set()

    def add(self, index: int, leaf: bytes) -> None:
        try:
            entry = decode_leaf(leaf)
        except LeafError:
            return  # the log's verification names a malformed entry
        if version(entry) == 1:
            self.v1.add(index)
        for name, values in derived(entry).items():
            for value in values:
                self.indexes.setdefault((name, value), array("q")).append(index)

    def values(self, name: str) -> list[str]:
        return sorted(v for n, v in self.indexes if n == name)


def compare(
    name: str,
    value: str,
    expected: Iterable[int],
    served: Iterable[tuple[int, bytes]],
    v1: Iterable[int] = (),
) -> tuple[int, str] | None:
    """The first wrong entry of the list served for ``name=value``, and what is wrong with it.

    ``served`` is ``(index, leaf)`` in the order served; every served leaf must re-derive
    ``value`` under ``name`` (v1 entries, whose leaves cannot say whom they concern, are
    skipped for ``concerning``); every expected index must be served. None: the list is
    exactly ``expected``.
    """
    skip = set(v1) if name == "concerning" else set()
    want: Iterator[int] = iter(expected)
    pending = next(want, None)
    for index, leaf in served:
        if index in skip:
            continue
        try:
            entry = decode_leaf(leaf)
        except LeafError:
            return index, f"entry {index} served for {name}={value} is malformed"
        if value not in derived(entry).get(name, []):
            return index, f"entry {index} is served for {name}={value}, but its leaf says otherwise"
        if pending is not None and pending < index:
            return pending, f"entry {pending} is left out of the list served for {name}={value}"
        if pending != index:
            return index, f"entry {index} is served twice or out of order for {name}={value}"
        pending = next(want, None)
    if pending is not None:
        return pending, f"entry {pending} is left out of the list served for {name}={value}"
    return None


def listed(items: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, bytes]]:
    """``(index, leaf)`` of a served list's items (``{"index", "leaf", "entry"}``), leaf decoded."""
    for item in items:
        yield int(item["index"]), base64.b64decode(str(item["leaf"]))
