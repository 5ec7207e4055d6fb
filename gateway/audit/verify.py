"""Offline verification of an exported audit log, for auditors and labs. No database.

Design note. From the exact leaf bytes alone the verifier recomputes the RFC 9162 §2.1.1
tree and checks, in one streaming pass (constant memory but O(log n) for the tree border):

- the newest checkpoint is a C2SP signed note by the trusted verifier key
  (c2sp.org/signed-note) and a well-formed c2sp.org/tlog-checkpoint of the expected origin;
- the leaves are as many as the checkpoint says and hash to its root;
- every leaf is an entry in the canonical form of :mod:`gateway.audit.leaf` whose ``index``
  field equals its position (so deletions, insertions and swaps show where they are);
- every v2 entry's ``prev`` names, for each org it concerns, the previous entry concerning
  that org, and each publication's run of ``audit.heads`` entries pins every org that has
  entries at its latest index, one entry per org (or, in older logs, one shared heads entry
  lists them all) (:class:`Chains`): so the chains a lab follows through the entries it is
  shown are the log's own; v1 entries carry no chain and may only come before the first v2
  entry;
- every earlier checkpoint the auditor saved (signed by the same key, same origin) is a
  prefix of this log: its size is not larger, the first ``size`` leaves hash to its root, and
  any consistency proof supplied (RFC 9162 §2.1.4.2) verifies.

When something fails the verdict names the first bad index where it can be determined: a
bisection over the saved checkpoints (the prefix roots that still match bound the first
change from below, the first that does not bounds it from above) and the entries' own index
fields.

A verdict is told one way, :meth:`Verdict.line`: ``ok: ...``, or ``FAILED: <what>; first bad
entry: N`` when an entry can be named (else the range it lies in).

Export format (JSON Lines): one ``{"index": i, "leaf": "<base64 leaf>"}`` per entry in index
order (:func:`entry_lines`; the anchors' ``entries-*.jsonl`` segments are these lines alone),
then one ``{"checkpoint": "<signed note text>"}`` line covering exactly those entries.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gateway.audit import merkle
from gateway.audit.leaf import HEADS_ACTION, LeafError, concerns, decode_leaf, link, version
from gateway.audit.note import Checkpoint, NoteError, open_checkpoint


@dataclass(frozen=True)
class Age:
    """How old a checkpoint is, as far as anything the verifier trusts dates it.

    ``at``: POSIX seconds, None when nothing trusted dates the checkpoint (signed by the
    log's key alone: the gateway's checkpoints carry no time of their own); ``dated_by``:
    ``"cosignature"`` (the time the policy's quorum last cosigned) or None; ``witnesses``:
    who cosigned at or after ``at``; ``seconds``: how long before the verification.
    """

    at: int | None = None
    dated_by: str | None = None
    witnesses: tuple[str, ...] = ()
    seconds: int | None = None

    def as_dict(self) -> dict[str, Any]:
        when = None
        if self.at is not None:
            when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "time": when,
            "dated_by": self.dated_by,
            "cosigned_by": list(self.witnesses),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Verdict:
    """The outcome of a verification.

    - ``ok`` and a one-line ``message``;
    - ``first_bad_index``: the first position shown to be wrong (by its index field, by the
      end of the entries, or pinned between two saved checkpoints one entry apart), or None
      when no single entry can be named;
    - ``intact_prefix``: the entries before it are proven unchanged by a saved checkpoint;
    - ``size``: the size of the checkpoint verified against, when it verified;
    - ``problem``: what failed, without where (``message`` is it with where);
    - ``bad_before``: the end of the range ``[intact_prefix, bad_before)`` that holds the
      first change, when saved checkpoints (or the end of the entries) bound it; no entry
      outside that range may be named;
    - ``root_mismatch``: the entries do not hash to the root of the checkpoint verified
      against (so a bisection against that checkpoint can locate the change);
    - ``age``: how old that checkpoint is, when the verifier asked (None: not asked).
    """

    ok: bool
    message: str
    first_bad_index: int | None = None
    intact_prefix: int = 0
    size: int | None = None
    problem: str = ""
    bad_before: int | None = None
    root_mismatch: bool = False
    age: Age | None = None

    @classmethod
    def failure(
        cls, problem: str, first: int | None = None, size: int | None = None, *, intact: int = 0
    ) -> Verdict:
        """A failed verdict; its message names ``first``, the first bad entry, when known."""
        return cls(False, problem + _where(first, intact, None), first, intact, size, problem)

    def pinned(self, first: int) -> Verdict:
        """This failure with its first bad entry found otherwise (by bisection, online).

        ``first`` must lie in the range this verdict proved holds the change.
        """
        end = self.bad_before if self.bad_before is not None else self.size
        if first < self.intact_prefix or (end is not None and first >= end):
            raise ValueError(f"entry {first} is outside [{self.intact_prefix}, {end})")
        return replace(
            self,
            first_bad_index=first,
            message=(self.problem or self.message) + _where(first, self.intact_prefix, None),
        )

    def line(self) -> str:
        """The verdict as ``gateway audit verify`` prints it: ``ok: ...`` or ``FAILED: ...``."""
        return self.message if self.ok else f"FAILED: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The verdict as ``gateway audit verify --json`` prints it."""
        return {
            "ok": self.ok,
            "message": self.message,
            "first_bad_index": self.first_bad_index,
            "size": self.size,
            "checkpoint_age": None if self.age is None else self.age.as_dict(),
        }


def _where(first: int | None, lo: int, hi: int | None) -> str:
    """Where the first change is: the entry ``first``, else in ``[lo, hi)``; what is proven before."""
    if first is not None:
        where = f"; first bad entry: {first}"
    elif hi is not None:
        where = f"; the first changed entry is between {lo} and {hi - 1}"
    else:
        where = ""
    if lo and (first is None or first > lo):
        where += f" (entries before {lo} are proven unchanged)"
    return where


class ExportError(ValueError):
    """An export file that is not in the export format."""


def entry_lines(leaves: Iterable[tuple[int, bytes]]) -> Iterator[str]:
    """One export line (ending in a newline) per ``(index, leaf)`` pair."""
    for index, leaf in leaves:
        yield json.dumps({"index": index, "leaf": base64.b64encode(leaf).decode()}) + "\n"


def export_lines(leaves: Iterable[tuple[int, bytes]], checkpoint: str) -> Iterator[str]:
    """The lines (each ending in a newline) of an export of ``(index, leaf)`` pairs and their checkpoint."""
    yield from entry_lines(leaves)
    yield json.dumps({"checkpoint": checkpoint}) + "\n"


def _parse_line(line: str, number: int) -> dict[str, object]:
    try:
        obj = json.loads(line)
    except ValueError:
        raise ExportError(f"line {number} is not JSON") from None
    if not isinstance(obj, dict):
        raise ExportError(f"line {number} is not a JSON object")
    return obj


def iter_export(lines: Iterable[str]) -> Iterator[tuple[int, bytes] | str]:
    """Stream an export: ``(index, leaf)`` per entry, then the checkpoint text last."""
    checkpoint: str | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if checkpoint is not None:
            raise ExportError(f"line {number} follows the checkpoint line")
        obj = _parse_line(line, number)
        if "checkpoint" in obj:
            if not isinstance(obj["checkpoint"], str):
                raise ExportError(f"line {number}: checkpoint is not a string")
            checkpoint = obj["checkpoint"]
            continue
        index, leaf = obj.get("index"), obj.get("leaf")
        if not isinstance(index, int) or not isinstance(leaf, str):
            raise ExportError(f"line {number} is neither an entry nor a checkpoint")
        try:
            yield index, base64.b64decode(leaf, validate=True)
        except binascii.Error:
            raise ExportError(f"line {number}: leaf is not base64") from None
    if checkpoint is None:
        raise ExportError("the export has no checkpoint line")
    yield checkpoint


def read_export(lines: Iterable[str]) -> tuple[list[bytes], str]:
    """Read a whole export into memory: the leaves in order and the checkpoint text."""
    leaves: list[bytes] = []
    checkpoint = ""
    for item in iter_export(lines):
        if isinstance(item, str):
            checkpoint = item
        else:
            if item[0] != len(leaves):
                raise ExportError(f"export line for entry {len(leaves)} says index {item[0]}")
            leaves.append(item[1])
    return leaves, checkpoint


class Chains:
    """The per-org chains of a log read in order: each org's latest entry so far.

    :meth:`add` checks one entry's ``prev`` against them and moves them on; the first v2
    entry is :attr:`first_v2` (None while only v1 entries were read). It also checks that
    each publication pinned every chain: a run of per-org heads entries (consecutive, in
    org name order) names every org that has entries, each at its latest index, and a
    shared heads entry (old logs) lists them all. :meth:`finish` checks the last run.
    """

    def __init__(self) -> None:
        self.heads: dict[str, int] = {}
        self.first_v2: int | None = None
        self.run: list[str] = []
        self.run_start = 0
        self.run_due: set[str] = set()

    def add(self, pos: int, entry: Mapping[str, Any]) -> tuple[int, str] | None:
        """What is wrong with entry ``pos``'s place in the chains (where, what), or None."""
        if version(entry) == 1:
            if self.first_v2 is None:
                return None
            return self.finish() or (pos, f"entry {pos} is v1 after v2 entries")
        if self.first_v2 is None:
            self.first_v2 = pos
        concerned = concerns(entry)
        problem = self._pins(pos, entry, concerned)
        expected = link(self.heads, concerned)
        for org in concerned:
            if problem is None and entry["prev"][org] != expected[org]:
                problem = (
                    pos,
                    f"entry {pos} links {org} to entry {entry['prev'][org]}, but the previous "
                    f"entry concerning {org} is {expected[org]}",
                )
        self.heads.update(dict.fromkeys(concerned, pos))
        return problem

    def _pins(
        self, pos: int, entry: Mapping[str, Any], concerned: tuple[str, ...]
    ) -> tuple[int, str] | None:
        """What is wrong with the heads entries up to ``pos`` (runs end at any other entry)."""
        org = entry["subject_org"] if entry["action"] == HEADS_ACTION else None
        ended = None
        if org is None or (self.run and org <= self.run[-1]):
            ended = self.finish()
        if org is None:
            return ended or self._shared(pos, entry, concerned)
        if not self.run:
            self.run_start, self.run_due = pos, set(self.heads)
        self.run.append(org)
        if org not in self.heads:
            return ended or (pos, f"heads entry {pos} names {org}, which has no entries before it")
        return ended

    def _shared(
        self, pos: int, entry: Mapping[str, Any], concerned: tuple[str, ...]
    ) -> tuple[int, str] | None:
        if entry["action"] != HEADS_ACTION or set(concerned) == set(self.heads):
            return None
        unlisted = sorted(set(self.heads) - set(concerned))
        return pos, f"heads entry {pos} does not list exactly the orgs with entries" + (
            f" (it leaves out {', '.join(unlisted)})" if unlisted else ""
        )

    def finish(self) -> tuple[int, str] | None:
        """End the current run of heads entries: what it leaves out, if anything."""
        run, self.run = self.run, []
        unpinned = sorted(self.run_due - set(run))
        if not run or not unpinned:
            return None
        # The first entry that is not what the whole run would hold there (in org name order).
        whole = sorted(self.run_due)
        k = next((i for i, (a, b) in enumerate(zip(run, whole, strict=False)) if a != b), len(run))
        end = self.run_start + len(run) - 1
        return self.run_start + k, (
            f"heads entries {self.run_start}..{end} do not pin every org with entries "
            f"(they leave out {', '.join(unpinned)})"
        )


class _Scan:
    """One pass over the leaves: the tree's border, prefix roots at wanted sizes, the first bad entry."""

    def __init__(self, sizes: Iterable[int]) -> None:
        self.wanted = set(sizes)
        self.rng = merkle.CompactRange()
        self.roots: dict[int, bytes] = {0: merkle.empty_root()}
        self.bad: tuple[int, str] | None = None
        self.chains = Chains()

    def add(self, leaf: bytes, claimed: int | None = None) -> None:
        pos = self.rng.size
        try:
            entry = decode_leaf(leaf)
        except LeafError as e:
            self._bad(pos, f"entry {pos} is malformed: {e}")
        else:
            if entry["index"] != pos:
                self._bad(pos, f"entry at position {pos} says index {entry['index']}")
            elif claimed is not None and claimed != pos:
                self._bad(pos, f"export line at position {pos} says index {claimed}")
            chained = self.chains.add(pos, entry)
            if chained is not None:
                self._bad(*chained)
        self.rng.append(merkle.leaf_hash(leaf))
        if self.rng.size in self.wanted:
            self.roots[self.rng.size] = self.rng.root()

    def finish(self) -> None:
        """The end of the leaves: the last run of heads entries must be whole too."""
        ended = self.chains.finish()
        if ended is not None:
            self._bad(*ended)

    def _bad(self, pos: int, problem: str) -> None:
        if self.bad is None:
            self.bad = (pos, problem)


def _open(text: str, vkey: str, origin: str | None, what: str) -> Checkpoint | Verdict:
    try:
        return open_checkpoint(text, [vkey], origin)
    except NoteError as e:
        return Verdict.failure(f"{what} does not verify: {e}")


def _bisect(olds: Sequence[Checkpoint], scan: _Scan, final_bad: bool) -> tuple[int, int | None]:
    """``[lo, hi)`` holding the first changed entry: matching prefixes below, the first mismatch above."""
    n = scan.rng.size
    bad = [o.size for o in olds if o.size <= n and scan.roots[o.size] != o.root]
    hi = min(bad) if bad else (n if final_bad else None)
    good = [
        o.size
        for o in olds
        if o.size <= n and scan.roots[o.size] == o.root and (hi is None or o.size < hi)
    ]
    return max(good, default=0), hi


def _against_saved(
    cp: Checkpoint,
    olds: Sequence[Checkpoint],
    scan: _Scan,
    proofs: Mapping[int, Sequence[bytes]],
    export: bool,
    problems: list[str],
    known_bad: list[int],
) -> None:
    """What each saved checkpoint shows of the entries, added to ``problems`` and ``known_bad``."""
    n = scan.rng.size
    for old in sorted(olds, key=lambda o: o.size):
        if old.size > cp.size and export:
            problems.append(
                f"the export is older than a saved checkpoint: it holds {cp.size} entries, the "
                f"saved checkpoint {old.size}, so it cannot show the log still extends that one; "
                "export the log again"
            )
        elif old.size > cp.size:
            known_bad.append(cp.size)
            problems.append(
                f"the log shrank: a saved checkpoint has {old.size} entries, this one {cp.size}"
            )
        elif old.size > n:
            known_bad.append(n)
            problems.append(f"the export lacks entries {n}..{old.size - 1} of a saved checkpoint")
        elif scan.roots[old.size] != old.root:
            problems.append(
                f"the first {old.size} entries differ from those of the saved checkpoint at size {old.size}"
            )
        proof = proofs.get(old.size)
        if proof is not None and 0 < old.size <= cp.size:
            try:
                merkle.verify_consistency(old.size, cp.size, proof, old.root, cp.root)
            except merkle.ProofError as e:
                problems.append(f"the consistency proof from size {old.size} does not verify: {e}")


def _judge(
    cp: Checkpoint,
    olds: Sequence[Checkpoint],
    scan: _Scan,
    proofs: Mapping[int, Sequence[bytes]],
    export: bool = False,
) -> Verdict:
    """The verdict; an ``export`` older than a saved checkpoint is stale, not a log that shrank."""
    n = scan.rng.size
    problems: list[str] = []
    known_bad: list[int] = []
    if scan.bad is not None:
        known_bad.append(scan.bad[0])
        problems.append(scan.bad[1])
    if n != cp.size:
        known_bad.append(min(n, cp.size))
        problems.append(f"the export has {n} entries but its checkpoint says {cp.size}")
    final_bad = n == cp.size and scan.rng.root() != cp.root
    if final_bad:
        problems.append(f"the entries do not hash to the root of the checkpoint at size {cp.size}")
    _against_saved(cp, olds, scan, proofs, export, problems, known_bad)
    if not problems:
        extra = f", consistent with {len(olds)} saved checkpoint(s)" if olds else ""
        return Verdict(
            True,
            f"ok: {n} entries verify against the checkpoint of {cp.origin} at size {cp.size}{extra}",
            None,
            n,
            cp.size,
        )
    lo, hi = _bisect(olds, scan, final_bad)
    if hi is not None:
        # The first change lies in [lo, hi): a later bad entry is not the first.
        known_bad = [p for p in known_bad if p < hi] + ([lo] if hi - lo == 1 else [])
    first = min(known_bad) if known_bad else None
    return Verdict(
        False,
        problems[0] + _where(first, lo, hi),
        first,
        lo,
        cp.size,
        problems[0],
        bad_before=hi,
        root_mismatch=final_bad,
    )


def verify_log(
    leaves: Iterable[bytes],
    checkpoint: str,
    vkey: str,
    *,
    earlier: Sequence[str] = (),
    proofs: Mapping[int, Sequence[bytes]] | None = None,
    origin: str | None = None,
) -> Verdict:
    """Verify ``leaves`` (exact bytes, index order) against a signed ``checkpoint`` and trusted ``vkey``.

    ``earlier``: signed checkpoints the auditor saved before; ``proofs``: consistency proofs
    from an earlier checkpoint's size to ``checkpoint``'s, by that size; ``origin``: the log
    the checkpoints must name (default: whatever ``checkpoint`` names).
    """
    return _verify(
        ((leaf, None) for leaf in leaves), lambda: checkpoint, vkey, earlier, proofs, origin
    )


def verify_export(
    lines: Iterable[str],
    vkey: str,
    *,
    earlier: Sequence[str] = (),
    proofs: Mapping[int, Sequence[bytes]] | None = None,
    origin: str | None = None,
) -> Verdict:
    """Like :func:`verify_log` for an export (:func:`export_lines`), streamed line by line."""
    box: list[str] = []

    def items() -> Iterator[tuple[bytes, int | None]]:
        for item in iter_export(lines):
            if isinstance(item, str):
                box.append(item)
            else:
                yield item[1], item[0]

    try:
        return _verify(items(), lambda: box[0], vkey, earlier, proofs, origin, export=True)
    except ExportError as e:
        return Verdict.failure(f"the export is malformed: {e}")


def _verify(
    leaves: Iterable[tuple[bytes, int | None]],
    checkpoint: Callable[[], str],
    vkey: str,
    earlier: Sequence[str],
    proofs: Mapping[int, Sequence[bytes]] | None,
    origin: str | None,
    *,
    export: bool = False,
) -> Verdict:
    olds: list[Checkpoint] = []
    for text in earlier:
        opened = _open(text, vkey, origin, "a saved checkpoint")
        if isinstance(opened, Verdict):
            return opened
        olds.append(opened)
    scan = _Scan(o.size for o in olds)
    for leaf, claimed in leaves:
        scan.add(leaf, claimed)
    scan.finish()
    cp = _open(checkpoint(), vkey, origin, "the checkpoint")
    if isinstance(cp, Verdict):
        return cp
    if any(o.origin != cp.origin for o in olds):
        return Verdict.failure(
            "a saved checkpoint is for another log than the checkpoint", size=cp.size
        )
    return _judge(cp, olds, scan, proofs or {}, export)
