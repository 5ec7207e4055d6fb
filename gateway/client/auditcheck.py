"""An auditor's check of the log: recompute the tree from the leaves, trust only the key.

Design note. Each leaf's exact bytes are hashed as RFC 9162 s. 2.1.1 says
(``SHA-256(0x00 || leaf)``) and folded into a compact range (:mod:`gateway.audit.merkle`),
so memory is O(log n) for the tree plus 32 bytes per leaf kept to localise a fault.
The checkpoint is a C2SP signed note (:mod:`gateway.audit.note`) opened with the
verifier key the auditor supplies, never one the gateway serves. A checkpoint saved
earlier must verify under the same key, come from the same origin, and its root must
equal the root recomputed over the first ``old size`` leaves (a stronger check than
a consistency proof, since every leaf is at hand). When the roots disagree and the
gateway is online, the first bad index is found by bisection with RFC 9162 s. 2.1.4
consistency proofs: a proof that verifies between the recomputed root of the first
``k`` leaves and the signed root shows those ``k`` leaves are the signed ones. (A log
that no longer extends a saved checkpoint is reported without an index: the gateway
can give no proof into the tree it abandoned.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.audit import merkle, note
from gateway.errors import GatewayError

Consistency = Callable[[int, int], list[bytes]]


class AuditKeyError(GatewayError):
    status, slug, title = 400, "audit-key", "Audit key"


@dataclass
class Verdict:
    ok: bool
    size: int
    detail: str
    first_bad: int | None = None
    since: int | None = None

    def line(self) -> str:
        if self.ok:
            extra = f"; extends the saved checkpoint of {self.since} entries" if self.since is not None else ""
            return f"ok: {self.size} entries verified against the signed checkpoint{extra}"
        where = f"; first bad index: {self.first_bad}" if self.first_bad is not None else ""
        return f"FAILED: {self.detail}{where}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_key(value: str) -> str:
    """The verifier key given as a string, or as a file holding it; checked for form."""
    path = Path(value)
    text = value
    if "+" not in value or path.is_file():
        try:
            text = next(line.strip() for line in path.read_text("utf-8").splitlines() if line.strip())
        except (OSError, StopIteration):
            raise AuditKeyError(f"{value}: neither a verifier key nor a file holding one") from None
    try:
        note.parse_verifier_key(text)
    except note.NoteError as exc:
        raise AuditKeyError(f"not a note verifier key: {exc}") from None
    return text


def check_signature(text: str, vkey: str) -> note.Checkpoint:
    try:
        return note.open_checkpoint(text, [vkey])
    except note.NoteError as exc:
        raise AuditKeyError(f"the checkpoint does not verify under the given key: {exc}") from None


def _root(hashes: list[bytes], size: int) -> bytes:
    cr = merkle.CompactRange()
    for h in hashes[:size]:
        cr.append(h)
    return cr.root() if size else merkle.empty_root()


def _bisect(hashes: list[bytes], cp: note.Checkpoint, consistency: Consistency) -> int | None:
    """The first index whose leaf is not the signed one (None if proofs cannot tell)."""

    def good_prefix(k: int) -> bool:
        try:
            proof = consistency(k, cp.size)
            merkle.verify_consistency(k, cp.size, proof, _root(hashes, k), cp.root)
        except (merkle.ProofError, GatewayError, ValueError):
            return False
        return True

    lo, hi = 0, cp.size  # prefix of lo leaves known good; prefix of hi leaves known bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if good_prefix(mid):
            lo = mid
        else:
            hi = mid
    return hi - 1 if hi >= 1 else None


def _entry_problem(index: int, leaf: bytes, entry: dict[str, Any] | None) -> str | None:
    try:
        parsed = json.loads(leaf)
    except ValueError:
        return f"leaf {index} is not a JSON entry"
    if not isinstance(parsed, dict) or parsed.get("index", index) != index:
        return f"leaf {index} claims another index"
    if entry is not None and entry != parsed:
        return f"entry {index} as listed differs from its leaf bytes"
    return None


def verify_leaves(text: str, leaves: Iterable[tuple[int, bytes, dict[str, Any] | None]], vkey: str,
                  old_text: str | None = None, consistency: Consistency | None = None) -> Verdict:
    """Check ``leaves`` (index, leaf bytes, entry as listed or None) against the signed checkpoint."""
    try:
        cp = note.open_checkpoint(text, [vkey])
        old = note.open_checkpoint(old_text, [vkey], origin=cp.origin) if old_text else None
    except note.NoteError as exc:
        return Verdict(False, 0, f"a checkpoint does not verify under the given key: {exc}")
    if old is not None and old.size > cp.size:
        return Verdict(False, cp.size, f"the log shrank: {cp.size} entries, {old.size} in the saved checkpoint")
    hashes: list[bytes] = []
    for index, leaf, entry in leaves:
        problem = _entry_problem(index, leaf, entry) if index == len(hashes) else f"entry {len(hashes)} is missing"
        if problem is not None:
            return Verdict(False, cp.size, problem, first_bad=min(index, len(hashes)))
        hashes.append(merkle.leaf_hash(leaf))
    if len(hashes) != cp.size:
        return Verdict(False, cp.size, f"{len(hashes)} entries, the checkpoint counts {cp.size}",
                       first_bad=len(hashes) if len(hashes) < cp.size else cp.size)
    since = old.size if old else None
    if old is not None and _root(hashes, old.size) != old.root:  # no proof into the old tree exists
        return Verdict(False, cp.size, "the log no longer holds the entries of the saved checkpoint",
                       since=since)
    if _root(hashes, cp.size) != cp.root:
        bad = _bisect(hashes, cp, consistency) if consistency else None
        return Verdict(False, cp.size, "the entries do not hash to the signed root", first_bad=bad, since=since)
    return Verdict(True, cp.size, "ok", since=since)


EXPORT_FORMAT = "gateway-audit-export-v1"


def write_export(path: Path, checkpoint_text: str, leaves: Iterable[tuple[int, bytes]]) -> int:
    """The export file: one JSON line per leaf, then one with the checkpoint; the entry count."""
    import base64

    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for index, leaf in leaves:
            fh.write(json.dumps({"index": index, "leaf": base64.b64encode(leaf).decode()}) + "\n")
            count += 1
        fh.write(json.dumps({"format": EXPORT_FORMAT, "checkpoint": checkpoint_text}) + "\n")
    tmp.replace(path)
    return count


def verify_file(path: Path, vkey: str, old_text: str | None) -> Verdict:
    """Verify an export file offline (two passes: the checkpoint, then the leaves)."""
    import base64

    checkpoint: str | None = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if '"checkpoint"' in line:
                checkpoint = json.loads(line).get("checkpoint")
    if not isinstance(checkpoint, str):
        return Verdict(False, 0, f"{path}: no checkpoint in the export")

    def leaves() -> Iterator[tuple[int, bytes, None]]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                if "leaf" in record:
                    yield int(record["index"]), base64.b64decode(record["leaf"]), None

    try:
        return verify_leaves(checkpoint, leaves(), vkey, old_text)
    except (ValueError, KeyError) as exc:
        return Verdict(False, 0, f"{path}: not an audit export ({exc})")
