"""C2SP tlog-proof: ``.tlog-proof`` files, offline proof that an entry is in a cosigned log.

Design note, by the section of c2sp.org/tlog-proof each piece implements:

- "Format": lines separated by newlines: ``c2sp.org/tlog-proof@v1``; optionally
  ``extra <base64>`` (opaque, unauthenticated application data; omitted when there is none);
  ``index <decimal>`` with no leading zeroes; zero or more base64 SHA-256 hashes, the RFC 6962
  inclusion proof from the leaf's sibling up; an empty line; the signed checkpoint verbatim
  (:func:`format_proof`, :func:`parse_proof`). Base64 must be canonical and the checkpoint a
  well-formed signed tlog-checkpoint, so one proof has one encoding.
- "Verifying a tlog proof": (1) the caller gives the leaf or its hash, (2) the origin must be
  a log of the policy and signed by its key, (3) the witnesses' cosignatures must satisfy the
  policy's quorum (both :func:`gateway.audit.trust.verify_checkpoint`), (4) the inclusion proof
  must bind the leaf hash to the checkpoint's root (:func:`verify_proof`). Every failure is a
  :class:`~gateway.audit.trust.CheckpointRefused` naming the step.
- Files "SHOULD be stored with file extension ``.tlog-proof``" (:data:`EXTENSION`);
  :func:`write_proof` replaces a file atomically, :func:`read_proof` reads at most
  :data:`MAX_PROOF_BYTES`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import merkle, note, trust
from gateway.audit.merkle import HASH_SIZE

HEADER = "c2sp.org/tlog-proof@v1"
EXTENSION = ".tlog-proof"
MAX_PROOF_HASHES = 64
MAX_PROOF_BYTES = 1 << 20
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")


class MalformedProof(ValueError):
    """The bytes are not a tlog-proof."""


class InclusionNotProven(trust.CheckpointRefused):
    """The inclusion proof does not bind the leaf to the checkpoint's root."""


@dataclass(frozen=True)
class TlogProof:
    """A tlog-proof: entry index, inclusion proof, signed checkpoint, optional extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


@dataclass(frozen=True)
class VerifiedProof:
    proof: TlogProof
    checkpoint: trust.VerifiedCheckpoint


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedProof(f"{what} is not base64") from None
    if not raw or base64.b64encode(raw).decode() != text:
        raise MalformedProof(f"{what} is not canonical base64")
    return raw


def _check_checkpoint(checkpoint: str) -> None:
    try:
        note.parse_checkpoint(note.parse_note(checkpoint)[0])
    except note.NoteError as exc:
        raise MalformedProof(f"the proof's checkpoint is not a signed checkpoint: {exc}") from None


def format_proof(p: TlogProof) -> bytes:
    """tlog-proof "Format": the proof's bytes."""
    if not 0 <= p.index < 1 << 64 or len(p.proof) > MAX_PROOF_HASHES:
        raise MalformedProof("index must be a 64-bit size and the proof at most 64 hashes")
    if any(len(h) != HASH_SIZE for h in p.proof):
        raise MalformedProof("every inclusion proof line is one SHA-256 hash")
    _check_checkpoint(p.checkpoint)
    lines = [HEADER]
    if p.extra:
        lines.append("extra " + base64.b64encode(p.extra).decode())
    lines.append(f"index {p.index}")
    lines += [base64.b64encode(h).decode() for h in p.proof]
    return ("\n".join(lines) + "\n\n" + p.checkpoint).encode()


def parse_proof(data: bytes | str) -> TlogProof:
    """Read a tlog-proof strictly; raise :class:`MalformedProof`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise MalformedProof("the proof is not UTF-8") from None
    head, sep, checkpoint = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != HEADER:
        raise MalformedProof(f"a tlog-proof starts with {HEADER} and has an empty line")
    extra = None
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest[0][len("extra ") :], "the extra line")
        rest = rest[1:]
    match = _INDEX.fullmatch(rest[0]) if rest else None
    if match is None or int(match.group(1)) >= 1 << 64:
        raise MalformedProof("the index line is missing or not a decimal index")
    if len(rest) - 1 > MAX_PROOF_HASHES:
        raise MalformedProof(f"more than {MAX_PROOF_HASHES} inclusion proof lines")
    proof = tuple(_b64(line, "an inclusion proof line") for line in rest[1:])
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedProof("an inclusion proof line is not one SHA-256 hash")
    _check_checkpoint(checkpoint)
    return TlogProof(int(match.group(1)), proof, checkpoint, extra)


def verify_proof(
    data: TlogProof | bytes | str,
    policy: trust.Policy,
    *,
    leaf: bytes | None = None,
    leaf_hash: bytes | None = None,
    origin: str | None = None,
    not_after: int | None = None,
) -> VerifiedProof:
    """tlog-proof "Verifying a tlog proof", offline: give the entry (``leaf``) or its hash."""
    if (leaf is None) == (leaf_hash is None):
        raise TypeError("give exactly one of leaf and leaf_hash")
    p = data if isinstance(data, TlogProof) else parse_proof(data)
    digest = merkle.leaf_hash(leaf) if leaf is not None else leaf_hash
    assert digest is not None
    verified = trust.verify_checkpoint(p.checkpoint, policy, origin=origin, not_after=not_after)
    try:
        merkle.verify_inclusion(
            p.index, verified.checkpoint.size, digest, p.proof, verified.checkpoint.root
        )
    except merkle.ProofError as exc:
        raise InclusionNotProven(
            f"entry {p.index} is not proven in the checkpoint of size {verified.checkpoint.size}: {exc}"
        ) from None
    return VerifiedProof(p, verified)


def write_proof(path: Path, p: TlogProof) -> None:
    """Write ``p`` to ``path``, replacing it atomically (a reader sees the old or the new proof)."""
    data = format_proof(p)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_proof(path: Path) -> TlogProof:
    """Read and parse a ``.tlog-proof`` file of at most :data:`MAX_PROOF_BYTES`."""
    with open(path, "rb") as f:
        data = f.read(MAX_PROOF_BYTES + 1)
    if len(data) > MAX_PROOF_BYTES:
        raise MalformedProof(f"{path} is over {MAX_PROOF_BYTES} bytes")
    return parse_proof(data)
