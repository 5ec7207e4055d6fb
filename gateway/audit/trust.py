"""C2SP tlog-policy: which logs and witnesses a verifier trusts, and checking a checkpoint with it.

Design note, by the section of c2sp.org/tlog-policy each piece implements:

- "Structure" and "Character set": line based; items separated by runs of space and tab;
  blank lines and ``#`` comment lines ignored; only tab, newline, 0x20-0x7E and 0x80-0xFF
  allowed; names are opaque octet strings (decoded with ``surrogateescape``, so they compare
  byte for byte).
- "Defining a log": ``log <vkey> [<url>]``; the vkey's key name is the log's origin. Log keys
  are Ed25519 (0x01) or ML-DSA-44 (0x06), the types c2sp.org/tlog-checkpoint "Signatures"
  lets a log use. "Defining a witness": ``witness <name> <vkey> [<url>]`` with a cosignature
  key (0x04 or 0x06, c2sp.org/tlog-cosignature). Two vkeys wrapping the same public key are
  duplicates, refused.
- "Defining a witness group": ``group <name> all|any|<k> <member>...`` with 1 <= k <= n,
  members defined on earlier lines, each at most once, never ``none``; witnesses and groups
  share one namespace. "Defining the quorum": exactly one ``quorum <name>``, a witness, a
  group or ``none``.
- "Implementation limits": at least 32 logs, witnesses and groups; here
  :data:`MAX_ENTRIES` of each.

:func:`verify_checkpoint` applies a policy to a signed checkpoint (c2sp.org/tlog-proof,
"Verifying a tlog proof", steps 2 and 3): the origin must be a listed log's and that log's
key must have signed; every cosignature by a listed witness key must verify (signed-note:
a bad signature by a known key rejects the note); the witnesses that cosigned must satisfy the
quorum. Each refusal is a :class:`CheckpointRefused` subclass whose message names the
requirement that failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.audit import note
from gateway.audit.note import Checkpoint, Verifier
from gateway.audit.sigtypes import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    SIG_MLDSA44_COSIGNATURE,
    cosignature_timestamp,
)

LOG_KEY_TYPES = frozenset({SIG_ED25519, SIG_MLDSA44_COSIGNATURE})
WITNESS_KEY_TYPES = frozenset({SIG_COSIGNATURE_V1, SIG_MLDSA44_COSIGNATURE})
MAX_ENTRIES = 256
NONE = "none"
_BAD_OCTET = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_SPLIT = re.compile(r"[ \t]+")
_K = re.compile(r"[1-9][0-9]{0,3}")  # a group has at most 2 * MAX_ENTRIES members


class PolicyError(ValueError):
    """A policy file does not follow tlog-policy."""


class CheckpointRefused(ValueError):
    """A checkpoint does not meet a policy; the message names the requirement that failed."""


class MalformedCheckpointNote(CheckpointRefused):
    """The bytes are not a signed checkpoint."""


class UnknownLog(CheckpointRefused):
    """No log of the policy has the checkpoint's origin (or the one the caller expects)."""


class LogSignatureMissing(CheckpointRefused):
    """The checkpoint is not signed by the key of the log it names."""


class BadSignature(CheckpointRefused):
    """A signature by a key of the policy does not verify."""


class CosignatureTooNew(CheckpointRefused):
    """A witness's cosignature is timestamped after the verifier's ``not_after``."""


class QuorumNotMet(CheckpointRefused):
    """The witnesses that cosigned do not satisfy the policy's quorum."""


@dataclass(frozen=True)
class PolicyLog:
    verifier: Verifier
    url: str | None = None

    @property
    def origin(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed tlog-policy: logs, witnesses, groups (in definition order) and the quorum."""

    logs: tuple[PolicyLog, ...]
    witnesses: Mapping[str, PolicyWitness]
    groups: Mapping[str, Group]
    quorum: str

    def logs_for(self, origin: str) -> list[PolicyLog]:
        return [log for log in self.logs if log.origin == origin]

    def witnessed(self, name: str, cosigned: Iterable[str]) -> bool:
        """Whether witness or group ``name`` (or ``none``) has witnessed, given who cosigned."""
        return not self.unmet(name, cosigned)

    def unmet(self, name: str, cosigned: Iterable[str]) -> list[str]:
        """The requirements under ``name`` that ``cosigned`` leaves unmet, innermost first.

        Linear in the size of the policy: groups only name earlier names, so one pass in
        definition order decides every group.
        """
        done = set(cosigned)
        ok = {w: w in done for w in self.witnesses}
        have: dict[str, int] = {}
        for g in self.groups.values():
            have[g.name] = sum(ok[m] for m in g.members)
            ok[g.name] = have[g.name] >= g.threshold
        if name == NONE or ok[name]:
            return []
        if name in self.witnesses:
            return [f"witness {name} has not cosigned"]
        out: list[str] = []
        seen: set[str] = set()

        def visit(group: Group) -> None:
            seen.add(group.name)
            for m in group.members:
                if m in self.groups and not ok[m] and m not in seen:
                    visit(self.groups[m])
            need = f"{group.threshold} of {len(group.members)} ({', '.join(group.members)})"
            out.append(f"group {group.name} needs {need} and has {have[group.name]}")

        visit(self.groups[name])
        return out


@dataclass
class _Builder:
    logs: list[PolicyLog] = field(default_factory=list)
    witnesses: dict[str, PolicyWitness] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    quorum: str | None = None
    keys: set[bytes] = field(default_factory=set)

    def key(self, vkey: str, types: frozenset[int], what: str) -> Verifier:
        try:
            verifier = note.parse_verifier_key(vkey, types)
        except (note.InvalidKey, UnicodeEncodeError) as exc:
            raise PolicyError(f"{what} key: {exc}") from None
        if verifier.public_key in self.keys:
            raise PolicyError(f"{what} key wraps a public key listed earlier")
        self.keys.add(verifier.public_key)
        return verifier

    def name(self, name: str) -> str:
        if name == NONE or name in self.witnesses or name in self.groups:
            raise PolicyError(f"name {name!r} is already defined")
        if len(self.witnesses) + len(self.groups) >= 2 * MAX_ENTRIES:
            raise PolicyError("too many witnesses and groups")
        return name

    def line(self, items: list[str]) -> None:
        keyword, args = items[0], items[1:]
        if keyword == "log" and len(args) in (1, 2):
            if len(self.logs) >= MAX_ENTRIES:
                raise PolicyError(f"more than {MAX_ENTRIES} logs")
            self.logs.append(PolicyLog(self.key(args[0], LOG_KEY_TYPES, "log"), _url(args)))
        elif keyword == "witness" and len(args) in (2, 3):
            name = self.name(args[0])
            verifier = self.key(args[1], WITNESS_KEY_TYPES, f"witness {name}")
            self.witnesses[name] = PolicyWitness(name, verifier, args[2] if len(args) > 2 else None)
        elif keyword == "group" and len(args) >= 3:
            self.group(self.name(args[0]), args[1], args[2:])
        elif keyword == "quorum" and len(args) == 1:
            if self.quorum is not None:
                raise PolicyError("a policy has exactly one quorum line")
            if args[0] != NONE and args[0] not in self.witnesses and args[0] not in self.groups:
                raise PolicyError(f"quorum {args[0]!r} is not a witness or group defined above")
            self.quorum = args[0]
        else:
            raise PolicyError(f"not a log, witness, group or quorum line: {' '.join(items)!r}")

    def group(self, name: str, k: str, members: list[str]) -> None:
        for m in members:
            if m not in self.witnesses and m not in self.groups:
                raise PolicyError(f"group {name} member {m!r} is not defined above")
        if len(set(members)) != len(members):
            raise PolicyError(f"group {name} lists a member twice")
        n = len(members)
        threshold = n if k == "all" else 1 if k == "any" else int(k) if _K.fullmatch(k) else 0
        if not 1 <= threshold <= n:
            raise PolicyError(f"group {name} threshold {k!r} is not all, any or 1..{n}")
        self.groups[name] = Group(name, threshold, tuple(members))


def _url(args: list[str]) -> str | None:
    return args[1] if len(args) > 1 else None


def parse_policy(data: bytes | str) -> Policy:
    """Parse a tlog-policy file; raise :class:`PolicyError` naming the line at fault."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    builder = _Builder()
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            if _BAD_OCTET.search(line):
                raise PolicyError("control characters other than tab are not allowed")
            text = line.decode("utf-8", "surrogateescape").strip(" \t")
            if text and not text.startswith("#"):
                builder.line(_SPLIT.split(text))
        except PolicyError as exc:
            raise PolicyError(f"policy line {number}: {exc}") from None
    if builder.quorum is None:
        raise PolicyError("policy has no quorum line")
    return Policy(tuple(builder.logs), builder.witnesses, builder.groups, builder.quorum)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint that met a policy: the log key that signed it and who cosigned, when."""

    checkpoint: Checkpoint
    text: str
    log: PolicyLog
    cosignatures: Mapping[str, int]  # witness name -> its newest cosignature's timestamp


def verify_checkpoint(
    signed: bytes | str,
    policy: Policy,
    *,
    origin: str | None = None,
    not_after: int | None = None,
) -> VerifiedCheckpoint:
    """Check a signed checkpoint against ``policy``; raise a :class:`CheckpointRefused` if it fails.

    ``origin`` additionally requires that log; ``not_after`` refuses cosignatures timestamped
    later (tlog-cosignature: verifiers MAY reject timestamps in the future).
    """
    try:
        text, lines = note.parse_note(signed)
        cp = note.parse_checkpoint(text)
    except note.NoteError as exc:
        raise MalformedCheckpointNote(f"not a signed checkpoint: {exc}") from None
    if origin is not None and cp.origin != origin:
        raise UnknownLog(f"checkpoint is for log {cp.origin!r}, not {origin!r}")
    logs = {(p.verifier.name, p.verifier.key_id): p for p in policy.logs_for(cp.origin)}
    if not logs:
        raise UnknownLog(f"no log of the policy has origin {cp.origin!r}")
    witnesses = {(w.verifier.name, w.verifier.key_id): w for w in policy.witnesses.values()}
    message = text.encode()
    signed_by: PolicyLog | None = None
    cosigned: dict[str, int] = {}
    for sig in lines:
        log, witness = logs.get((sig.name, sig.key_id)), witnesses.get((sig.name, sig.key_id))
        verifier = log.verifier if log else witness.verifier if witness else None
        if verifier is None:
            continue  # signed-note: signatures by unknown keys are ignored
        if not verifier.verify(message, sig.signature):
            who = f"log {cp.origin}" if log else f"witness {witness.name if witness else ''}"
            raise BadSignature(f"the signature of {who} ({verifier.vkey[:60]}...) does not verify")
        if log is not None:
            signed_by = signed_by or log
        elif witness is not None:
            when = cosignature_timestamp(sig.signature)
            if not_after is not None and when > not_after:
                raise CosignatureTooNew(
                    f"witness {witness.name} cosigned at {when}, after {not_after}"
                )
            # a witness with two keys (Ed25519 and ML-DSA-44) vouches as of its older one: a
            # fresh cosignature under one key alone (the classical key broken) dates nothing
            cosigned[witness.name] = min(when, cosigned.get(witness.name, when))
    if signed_by is None:
        raise LogSignatureMissing(f"checkpoint is not signed by a key of log {cp.origin!r}")
    unmet = policy.unmet(policy.quorum, cosigned)
    if unmet:
        who = ", ".join(sorted(cosigned)) or "no witness"
        raise QuorumNotMet(
            f"quorum {policy.quorum} is not met ({who} cosigned): {'; '.join(unmet)}"
        )
    return VerifiedCheckpoint(cp, text, signed_by, cosigned)


def quorum_time(policy: Policy, cosigned: Mapping[str, int]) -> tuple[int, tuple[str, ...]] | None:
    """When the quorum last vouched for a checkpoint: the newest time ``T`` such that the
    witnesses that cosigned at ``T`` or later meet ``policy``'s quorum, and those witnesses
    (sorted); None when no witness cosigned (or the quorum is not met).

    A fresh cosignature from one witness does not make a checkpoint fresh when the quorum
    wants two: the age is that of the quorum's word. Under quorum ``none`` it is the newest
    cosignature's time.
    """
    for t in sorted(set(cosigned.values()), reverse=True):
        recent = sorted(w for w, when in cosigned.items() if when >= t)
        if policy.witnessed(policy.quorum, recent):
            return t, tuple(recent)
    return None
