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

Under a C2SP tlog-policy (``--policy``: the log's key, the witnesses, the quorum), the
checkpoint must also carry the cosignatures the quorum asks for
(:func:`verify_checkpoint_text`), and the log's key is the policy's. From C2SP tlog-tiles
(``--tiles``), the leaves come from the entry bundles and the consistency proofs from the
hash tiles, authenticated against the checkpoint's root (:func:`tiles_source`): nothing
but the tiles and the checkpoint is read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit import merkle, note, tiles, trust, verify
from gateway.audit.tilereader import TileReader
from gateway.audit.verify import Age, Verdict
from gateway.client import humane
from gateway.client.errors import AuditError, AuditKeyError, ClientError, InvocationError

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


def read_policy(path: Path) -> trust.Policy:
    """A C2SP tlog-policy file (``gateway audit policy`` prints the gateway's)."""
    try:
        return trust.parse_policy(path.read_bytes())
    except OSError as exc:
        raise AuditKeyError(f"cannot read the policy {path}: {exc.strerror}") from None
    except trust.PolicyError as exc:
        raise AuditKeyError(f"{path} is not a tlog-policy: {exc}") from None


def verify_checkpoint_text(text: str, policy_or_key: trust.Policy | str) -> note.Checkpoint:
    """The checkpoint of ``text`` if it meets the policy (log key and witness quorum), or is
    signed by the verifier key; else :class:`AuditKeyError` saying which requirement failed."""
    if isinstance(policy_or_key, str):
        return check_signature(text, policy_or_key)
    try:
        return trust.verify_checkpoint(text, policy_or_key).checkpoint
    except trust.CheckpointRefused as exc:
        raise AuditKeyError(f"the checkpoint does not meet the policy: {exc}") from None


def policy_log_key(text: str, policy: trust.Policy) -> str:
    """The verifier key of the policy's log that signed ``text`` (which must meet the policy)."""
    try:
        return trust.verify_checkpoint(text, policy).log.verifier.vkey
    except trust.CheckpointRefused as exc:
        raise AuditKeyError(f"the checkpoint does not meet the policy: {exc}") from None


UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_AGE_LIMIT = 10 * 366 * 86400  # ten years: anything longer is a typing error, not a bound
_DURATION = re.compile(r"(?:[0-9]{1,9}[wdhms])+")
UNDATED = (
    "no witness cosignature dates it (the checkpoint carries no time of its own): "
    "verify with a --policy whose witnesses cosign it"
)


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``24h``, ``30m``, ``7d``, ``1d12h`` (units w d h m s)."""
    value = text.strip().lower()
    if not _DURATION.fullmatch(value):
        raise InvocationError(f"--max-age {text!r} is not a duration such as 24h, 30m or 7d")
    seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"([0-9]+)([wdhms])", value))
    if not 0 < seconds <= MAX_AGE_LIMIT:
        raise InvocationError(f"--max-age {text!r} is not between 1s and 10 years")
    return seconds


def span(seconds: int) -> str:
    """``seconds`` in the largest unit that divides it: ``1d``, ``90m``, ``45s``."""
    unit = next(u for u, length in UNITS.items() if seconds % length == 0)
    return f"{seconds // UNITS[unit]}{unit}"


CLOCK_SKEW = 300
"""Seconds a witness's clock may run ahead of this machine's before its cosignature is refused."""


def checkpoint_age(text: str, trusted: trust.Policy | str, now: float) -> Age:
    """How old the checkpoint ``text`` is: when the policy's quorum last cosigned it
    (:func:`gateway.audit.trust.quorum_time`). Undated under a key alone (a log's signature
    carries no time, and the gateway's checkpoints carry none in their text), when no
    witness cosigned, or when the checkpoint does not meet the policy."""
    if isinstance(trusted, str):
        return Age()
    try:
        verified = trust.verify_checkpoint(text, trusted, not_after=int(now) + CLOCK_SKEW)
    except trust.CosignatureTooNew:
        raise
    except trust.CheckpointRefused:
        return Age()
    found = trust.quorum_time(trusted, verified.cosignatures)
    if found is None:
        return Age()
    at, witnesses = found
    return Age(at, "cosignature", witnesses, int(now) - at)


def dated(
    verdict: Verdict,
    text: str,
    trusted: trust.Policy | str,
    max_age: int | None = None,
    now: float | None = None,
) -> Verdict:
    """``verdict`` with the age of its checkpoint ``text`` said, and refused when that is
    older than ``max_age`` seconds, or undated while a ``max_age`` is asked (fail closed)."""
    moment = time.time() if now is None else now
    try:
        age = checkpoint_age(text, trusted, moment)
    except trust.CosignatureTooNew as exc:  # a date from the future dates nothing: refused
        problem = f"a witness's cosignature is dated in the future ({exc}): the checkpoint's age cannot be trusted"
        return replace(Verdict.failure(problem, size=verdict.size), age=Age())
    if not verdict.ok:
        return replace(verdict, age=age)
    if age.at is None or age.seconds is None:
        if max_age is None:
            return replace(
                verdict, message=f"{verdict.message}; its age is unknown: {UNDATED}", age=age
            )
        problem = (
            f"the checkpoint's age cannot be checked against --max-age {span(max_age)}: {UNDATED}"
        )
        return replace(Verdict.failure(problem, size=verdict.size), age=age)
    stamp = Age(age.at).as_dict()["time"]
    said = (
        f"cosigned by {', '.join(age.witnesses)} at {stamp} "
        f"({humane.ago(stamp, datetime.fromtimestamp(moment, UTC))})"
    )
    if max_age is not None and age.seconds > max_age:
        problem = f"the checkpoint is older than --max-age {span(max_age)}: {said}"
        return replace(Verdict.failure(problem, size=verdict.size), age=age)
    return replace(verdict, message=f"{verdict.message}; {said}", age=age)


Fetch = Callable[[str], bytes]
"""Returns the bytes at a tlog-tiles path (``tile/0/000.p/5``); nothing it returns is trusted."""


def tiles_source(
    cp: note.Checkpoint, fetch: Fetch
) -> tuple[Iterator[tuple[int, bytes, dict[str, Any] | None]], Consistency]:
    """The leaves of ``cp``'s tree from its entry bundles, and consistency proofs from its
    hash tiles (authenticated against ``cp.root``: :class:`AuditError` if they are not)."""
    try:
        reader = TileReader(cp.size, cp.root, lambda t: fetch(t.path()))
    except merkle.ProofError as exc:
        raise AuditError(f"the log's tiles do not match its checkpoint: {exc}") from None

    def leaves() -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
        for start in range(0, cp.size, tiles.TILE_WIDTH):
            bundle = tiles.bundle_at(start // tiles.TILE_WIDTH, cp.size)
            try:
                found = tiles.decode_entry_bundle(fetch(bundle.path()), bundle.width)
            except tiles.TileError as exc:
                raise AuditError(f"{bundle.path()} is not an entry bundle: {exc}") from None
            for offset, leaf in enumerate(found):
                yield start + offset, leaf, None

    def consistency(old: int, new: int) -> list[bytes]:
        try:
            return reader.consistency_proof(old, new)
        except merkle.ProofError as exc:
            raise AuditError(f"the log's tiles do not prove {old} -> {new}: {exc}") from None

    return leaves(), consistency


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


def verify_file(
    path: Path,
    trusted: trust.Policy | str,
    old_text: str | Sequence[str] | None,
    max_age: int | None = None,
) -> Verdict:
    """Verify an export file offline, streaming it, against any number of saved checkpoints;
    under a policy (``trusted``), its checkpoint must meet it, and the log's key is the
    policy's. The verdict says the checkpoint's age, refused past ``max_age`` (:func:`dated`)."""
    text = ""
    if isinstance(trusted, str):
        vkey: str | Verdict = trusted
    else:
        text, vkey = _export_log_key(path, trusted)
    if not isinstance(vkey, str):
        return vkey
    with open(path, encoding="utf-8") as fh:
        verdict = verify.verify_export(fh, vkey, earlier=_olds(old_text))
    return dated(verdict, text, trusted, max_age)


def _export_log_key(path: Path, policy: trust.Policy) -> tuple[str, str | Verdict]:
    """The export's checkpoint text, and the key of the policy's log that signed it (or the
    failed verdict)."""
    text = ""
    try:
        with open(path, encoding="utf-8") as fh:
            for item in verify.iter_export(fh):  # the checkpoint comes last, or it raises
                text = item if isinstance(item, str) else text
        return text, policy_log_key(text, policy)
    except verify.ExportError as exc:
        return text, Verdict.failure(f"the export is malformed: {exc}")
    except AuditKeyError as exc:
        return text, Verdict.failure(str(exc))
