"""The witness: checks a submitted checkpoint against its state and cosigns it, or says why not.

Design note, following c2sp.org/tlog-witness "add-checkpoint" step by step (each refusal is a
:class:`Refusal` carrying the status the spec assigns):

1. The body is parsed strictly (:func:`gateway.audit.witness.parse_add_checkpoint`): 400.
2. An origin not in the log list: 404. The note must carry a valid signature by a key the
   witness trusts for that origin, signatures by other keys ignored; none, or any line by a
   trusted key that does not verify: 403. A note or checkpoint that does not parse, or whose
   text is not the canonical encoding of the checkpoint it parses to: 400.
3. Old size above the checkpoint's size: 400. A checkpoint of size 0 whose root is not the
   empty tree's hash: 422.
4. Under the log's lock: old size not the size of the latest cosigned checkpoint (0 if none):
   409 with that size. Old size 0 with a non-empty proof, or a consistency proof that does not
   verify from the stored root: 422. Equal sizes with an empty proof but different roots: 409
   ("If the old size matches the checkpoint size, the witness MUST check that the root hashes
   are also identical. If they don't match, the witness MUST respond with a 409 Conflict"),
   with the same ``text/x.tlog.size`` body as any 409, so a log reads one kind of answer and
   sees that the size it sent is already the witness's: a fork at that size.
5. The checkpoint it already cosigned, submitted again: the stored cosignatures, with nothing
   signed or written (the spec asks for cosignatures on the checkpoint, not new ones).
6. Otherwise the log's budget (``qpd``, :mod:`gateway.witness.budget`) is spent, or 429
   with ``Retry-After``. The witness signs the checkpoint's text, stores it with the first
   verified signature line of each of the log's keys (nothing it did not verify) and its own
   cosignatures, durably, and only then answers 200 with its cosignature lines. A result over
   the state's size limit is refused (413) and nothing is stored.

A witness policy beyond the spec: checkpoints with extension lines are refused (400), since
its ML-DSA-44 cosignature would not cover them (c2sp.org/tlog-checkpoint "Signatures").
A log whose origin one of its keys cannot sign for (over 255 bytes for ML-DSA-44) is refused
when the witness starts. A stored checkpoint that no longer verifies under the witness's own
keys stops that log with a 500 rather than be trusted (fail closed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.audit import merkle, note
from gateway.audit.cosignature import Cosigner
from gateway.audit.witness import MalformedRequest, parse_add_checkpoint
from gateway.witness.budget import Budget, Clock
from gateway.witness.loglist import Log
from gateway.witness.state import StateDir, origin_hash

log = logging.getLogger("gateway.witness")


class Refusal(Exception):
    """An add-checkpoint request the witness refuses, with its HTTP status, body and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = (message + "\n").encode()
        self.content_type = content_type
        self.headers = list(headers)


@dataclass(frozen=True)
class Submission:
    """A parsed add-checkpoint request whose log signatures all verified."""

    log: Log
    checkpoint: note.Checkpoint
    text: str  # the checkpoint's note text, canonical
    log_lines: tuple[str, ...]  # the first verified signature line of each of the log's keys
    old_size: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Stored:
    """The latest cosigned checkpoint of a log, as stored and served."""

    checkpoint: note.Checkpoint
    data: bytes
    cosignatures: bytes = field(default=b"")  # its own lines, one per key; b"" if one is missing


class Witness:
    """A witness: its cosigners, the logs it cosigns for, its state directory."""

    def __init__(
        self,
        cosigners: Sequence[Cosigner],
        logs: Mapping[str, Log],
        state: StateDir,
        clock: Clock = time.monotonic,
    ) -> None:
        """``clock`` paces the logs' budgets (seconds, monotonic)."""
        if not cosigners:
            raise ValueError("a witness needs at least one cosigner key")
        names = {c.name for c in cosigners}
        if len(names) != 1:
            raise ValueError("a witness's keys share one name")
        self.name = names.pop()
        if self.name in logs:
            raise ValueError(f"log origin {self.name!r} is the witness's own name")
        for origin in logs:
            for c in cosigners:
                try:
                    c.check_origin(origin)
                except note.NoteError as exc:
                    raise ValueError(f"log origin {origin[:60]!r}: {exc}") from None
        self.cosigners = tuple(cosigners)
        self.logs = dict(logs)
        self._by_hash = {origin_hash(origin): origin for origin in self.logs}
        self._budgets = {o: Budget(entry.qpd, clock) for o, entry in self.logs.items() if entry.qpd}
        self.state = state
        self._own = [c.verifier for c in cosigners]

    def verifier_keys(self) -> list[str]:
        return [c.verifier_key for c in self.cosigners]

    def _stored(self, origin: str, data: bytes | None) -> Stored | None:
        if data is None:
            return None
        try:
            opened = note.open_note(data, self._own)
            cp = note.parse_checkpoint(opened.text)
            if cp.origin != origin:
                raise note.MalformedCheckpoint(f"checkpoint is for origin {cp.origin!r}")
        except note.NoteError as exc:
            log.error("stored checkpoint of %s does not verify: %s", origin, exc)
            raise Refusal(500, "the witness's stored state for this log is damaged") from None
        own = "".join(s.line for s in opened.verified)
        return Stored(cp, data, own.encode() if len(opened.verified) == len(self._own) else b"")

    def checkpoint(self, key: str) -> bytes | None:
        """The latest cosigned checkpoint of the log whose origin hashes to ``key``."""
        origin = self._by_hash.get(key)
        if origin is None:
            return None
        stored = self._stored(origin, self.state.read(key))
        return None if stored is None else stored.data

    def _open(self, body: bytes) -> Submission:
        try:
            request = parse_add_checkpoint(body)
            first = request.checkpoint.split(b"\n", 1)[0].decode()
        except (MalformedRequest, UnicodeDecodeError) as exc:
            raise Refusal(400, f"malformed request: {exc}") from None
        entry = self.logs.get(first)
        if entry is None:
            raise Refusal(404, f"unknown log {first[:100]!r}")
        try:
            opened = note.open_note(request.checkpoint, entry.verifiers)
            cp = note.parse_checkpoint(opened.text)
        except (note.UnverifiedNote, note.InvalidSignature) as exc:
            raise Refusal(403, f"invalid signature: {exc}") from None
        except note.NoteError as exc:
            raise Refusal(400, f"invalid checkpoint: {exc}") from None
        if cp.extensions:
            raise Refusal(400, "invalid checkpoint: extension lines are not cosigned")
        if note.format_checkpoint(cp) != opened.text:  # what is signed is what was checked
            raise Refusal(400, "invalid checkpoint: its text is not in canonical form")
        lines = tuple(s.line for s in opened.verified)  # every one by a key of this log
        return Submission(entry, cp, opened.text, lines, request.old_size, request.proof)

    def _spend(self, origin: str) -> None:
        budget = self._budgets.get(origin)
        wait = budget.spend() if budget is not None else 0.0
        if wait > 0:
            seconds = str(max(1, math.ceil(wait)))
            raise Refusal(
                429,
                f"log {origin[:100]!r} is over its budget of new checkpoints; retry later",
                headers=[("Retry-After", seconds)],
            )

    def add_checkpoint(self, body: bytes) -> bytes:
        """Handle one add-checkpoint body: the cosignature lines, or raise :class:`Refusal`."""
        sub = self._open(body)
        cp, old = sub.checkpoint, sub.old_size
        if old > cp.size:
            raise Refusal(400, f"old size {old} is above the checkpoint's size {cp.size}")
        if cp.size == 0 and cp.root != merkle.empty_root():
            raise Refusal(422, "a checkpoint of size 0 must have the empty tree's root")
        with self.state.locked(cp.origin) as state:
            data = state.read()
            stored = self._stored(cp.origin, data)
            known = (
                stored.checkpoint if stored else note.Checkpoint(cp.origin, 0, merkle.empty_root())
            )
            if old != known.size:
                log.info("%s: old size %d, witness has %d", cp.origin, old, known.size)
                raise Refusal(409, str(known.size), "text/x.tlog.size")
            _check_consistency(known, cp, sub.proof)
            if stored is not None and stored.cosignatures and cp == stored.checkpoint:
                return stored.cosignatures  # a replay: the same statement, nothing new to sign
            self._spend(cp.origin)
            cosig_lines = [note.signature_line(c, sub.text) for c in self.cosigners]
            signed = (sub.text + "\n" + "".join(sub.log_lines) + "".join(cosig_lines)).encode()
            if len(signed) > state.max_bytes:
                raise Refusal(413, f"the cosigned checkpoint would be over {state.max_bytes} bytes")
            state.replace(data, signed)
        log.info("%s: cosigned size %d (was %d)", cp.origin, cp.size, known.size)
        return "".join(cosig_lines).encode()


def _check_consistency(known: note.Checkpoint, cp: note.Checkpoint, proof: Sequence[bytes]) -> None:
    if known.size == 0:
        if proof:
            raise Refusal(422, "bad consistency proof: old size 0 needs an empty proof")
        return
    if known.size == cp.size and not proof and known.root != cp.root:
        log.warning("%s: a checkpoint of size %d with another root: a fork", cp.origin, cp.size)
        raise Refusal(409, str(known.size), "text/x.tlog.size")
    try:
        merkle.verify_consistency(known.size, cp.size, proof, known.root, cp.root)
    except merkle.ProofError as exc:
        raise Refusal(422, f"bad consistency proof: {exc}") from None
