"""An auditor's check of the log: recompute the tree from the leaves, trust only the key.

Design note. The verdict is :mod:`gateway.audit.verify`'s: every leaf hashed as RFC 9162
s. 2.1.1 says, the tree recomputed, the checkpoint opened as a C2SP signed note with the
verifier key the auditor supplies (never one the gateway serves), entries' own index
fields checked, and each checkpoint the auditor saved earlier checked to be a prefix of
this log (with the gateway's RFC 9162 s. 2.1.4 consistency proof as well, online).

Online, the client adds two checks the gateway makes possible: each entry as the gateway
lists it must be the JSON of its leaf bytes, and when the leaves do not hash to the signed
root and no index can be named, the first bad index is found by bisection with the
gateway's consistency proofs: a proof that verifies between the recomputed root of the
first ``k`` leaves and the signed root shows those ``k`` leaves are the signed ones.
Memory is 32 bytes per entry for that bisection; the export path streams.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.audit import merkle, note, verify
from gateway.audit.verify import Verdict
from gateway.client.errors import AuditError, AuditKeyError, ClientError

Consistency = Callable[[int, int], list[bytes]]


def checkpoint_size(text: str) -> int:
    """The tree size of a signed checkpoint's text (its signature is not checked here)."""
    body = text.partition("\n\n")[0].rstrip("\n") + "\n"  # the note's text, signatures off
    try:
        return note.parse_checkpoint(body).size
    except note.NoteError as exc:
        raise AuditError(f"the gateway's checkpoint is not a tlog checkpoint: {exc}") from None


def read_key(value: str) -> str:
    """The verifier key given as a string, or as a file holding it; checked for form."""
    path = Path(value)
    text = value
    if "+" not in value or path.is_file():
        try:
            text = next(
                line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()
            )
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
    return cr.root()


def bisect(
    hashes: list[bytes],
    cp: note.Checkpoint,
    consistency: Consistency,
    lo: int = 0,
    hi: int | None = None,
) -> int | None:
    """The first index whose leaf is not the signed one, by consistency proofs.

    ``lo`` leaves are known good and a prefix of ``hi`` known bad (default: all of them);
    the answer is in ``[lo, hi)``, or None when there is nothing to search.
    """

    def good_prefix(k: int) -> bool:
        try:
            merkle.verify_consistency(
                k, cp.size, consistency(k, cp.size), _root(hashes, k), cp.root
            )
        except (merkle.ProofError, ClientError, ValueError):
            return False
        return True

    hi = min(cp.size, len(hashes), cp.size if hi is None else hi)
    if hi <= lo:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if good_prefix(mid):
            lo = mid
        else:
            hi = mid
    return hi - 1


def _listed_problem(index: int, leaf: bytes, entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    try:
        same = json.loads(leaf) == entry
    except ValueError:
        same = False
    return None if same else f"entry {index} as the gateway lists it differs from its leaf bytes"


def _olds(old_text: str | Sequence[str] | None) -> list[str]:
    if not old_text:
        return []
    return [old_text] if isinstance(old_text, str) else list(old_text)


def verify_leaves(
    text: str,
    leaves: Iterable[tuple[int, bytes, dict[str, Any] | None]],
    vkey: str,
    old_text: str | Sequence[str] | None = None,
    consistency: Consistency | None = None,
) -> Verdict:
    """Check ``leaves`` (index, leaf bytes, entry as listed or None) against the signed checkpoint."""
    hashes: list[bytes] = []
    listed: list[tuple[int, str]] = []

    def stream() -> Iterator[bytes]:
        for index, leaf, entry in leaves:
            problem = _listed_problem(index, leaf, entry)
            if problem is not None and not listed:
                listed.append((index, problem))
            hashes.append(merkle.leaf_hash(leaf))
            yield leaf

    earlier = _olds(old_text)
    proofs: dict[int, list[bytes]] = {}
    if consistency is not None:
        new = checkpoint_size(text)
        for saved in earlier:
            old = _saved_size(saved)
            if 0 < old <= new and old not in proofs:
                proofs[old] = consistency(old, new)
    result = verify.verify_log(stream(), text, vkey, earlier=earlier, proofs=proofs)
    if listed and result.ok:
        index, problem = listed[0]
        return Verdict.failure(problem, index, result.size)
    # Bisect only leaves that fail the signed root: against a root they match (a log
    # rewritten and re-signed, caught by a saved checkpoint), every prefix is consistent,
    # and the search would name an entry outside the range the saved checkpoints proved.
    if result.ok or result.first_bad_index is not None or consistency is None:
        return result
    if result.size is None or not result.root_mismatch:
        return result
    cp = note.open_checkpoint(text, [vkey])
    found = bisect(hashes, cp, consistency, result.intact_prefix, result.bad_before)
    return result if found is None else result.pinned(found)


def _saved_size(text: str) -> int:
    """A saved checkpoint's size, 0 when it is malformed (the verification then says so)."""
    try:
        return checkpoint_size(text)
    except AuditError:
        return 0


def write_export(path: Path, checkpoint_text: str, leaves: Iterable[tuple[int, bytes]]) -> int:
    """The export file (:func:`gateway.audit.verify.export_lines`); the number of entries."""
    count = 0

    def counted() -> Iterator[tuple[int, bytes]]:
        nonlocal count
        for item in leaves:
            count += 1
            yield item

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(verify.export_lines(counted(), checkpoint_text))
    tmp.replace(path)
    return count


def verify_file(path: Path, vkey: str, old_text: str | Sequence[str] | None) -> Verdict:
    """Verify an export file offline, streaming it, against any number of saved checkpoints."""
    with open(path, encoding="utf-8") as fh:
        return verify.verify_export(fh, vkey, earlier=_olds(old_text))
