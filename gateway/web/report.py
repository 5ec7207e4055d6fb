"""The 30-day review report as a file: what it lists, its totals, and its offline verifier.

Design note. An exported report is one self-contained HTML file (no script, no external
reference) that a person reads and a program checks. Besides the tables and the timeline
it holds, as data, the subject and window (``<main id="review" data-...>``), the gateway's
signed checkpoint (``<pre id="checkpoint">``), and for every entry listed its exact leaf
(base64, ``data-leaf``) and a C2SP ``.tlog-proof`` (``<pre class="tlog-proof">``).

:func:`verify_report` trusts nothing in the file but what it can check with the log's
verifier key (or a tlog-policy), offline: the checkpoint verifies; each leaf is a
well-formed entry, concerns the subject, falls in the window, and its proof binds it to
that same checkpoint (c2sp.org/tlog-proof, "Verifying a tlog proof"); the entries the
tables list are exactly those proven; and the totals are recomputed from the proven
leaves (:func:`tally`, the same function the gateway used to write them) and must match.
What it cannot check with this log version is that no entry was left out; the verdict
says so. The module imports nothing of the server, so the client install can run it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import click

from gateway.audit import leaf as leaves
from gateway.audit import tlogproof, trust
from gateway.tui import fail

MAX_REPORT_BYTES = 256 << 20
DECISIONS = ("access.approve", "access.deny", "grant.revoke", "grant.expire")
COUNTED = ("requests", "approved", "denied", "releases", "downloads", "bytes", "refused")


class ReportError(ValueError):
    """The file is not a review report, or does not verify; the message says which check failed."""


@dataclass(frozen=True)
class Total:
    """What one evaluator (or, with ``actor`` empty, one agency) did in the window."""

    org: str
    actor: str
    requests: int = 0
    approved: int = 0
    denied: int = 0
    releases: int = 0
    downloads: int = 0
    bytes: int = 0
    refused: int = 0

    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTED)


def _subject_of(entry: dict[str, Any]) -> str | None:
    """The evaluator an entry is about: its actor, or for a decision the grantee."""
    if entry["action"] in DECISIONS:
        grantee = entry["details"].get("grantee")
        return grantee if isinstance(grantee, str) else None
    return entry["actor"] if entry["role"] == "evaluator" else None


def agency_members(entries: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Evaluator id -> agency, from the entries they made themselves."""
    return {e["actor"]: e["org"] for e in entries if e["role"] == "evaluator"}


def tally(entries: list[dict[str, Any]]) -> tuple[list[Total], list[Total]]:
    """Totals per evaluator and per agency, from entries (decoded leaves) alone."""
    orgs = agency_members(entries)
    counts: dict[str, dict[str, int]] = {}
    for e in entries:
        who = _subject_of(e)
        if who is None:
            continue
        c = counts.setdefault(who, dict.fromkeys(COUNTED, 0))
        action, ok = e["action"], e["outcome"] == "ok"
        if action == "access.request" and ok:
            c["requests"] += 1
        elif action == "access.approve":
            c["approved"] += 1
        elif action == "access.deny":
            c["denied"] += 1
        elif action == "key.release":
            c["releases"] += 1
        elif action == "content.download":
            c["downloads"] += 1
            sent = e["details"].get("bytes")
            c["bytes"] += sent if isinstance(sent, int) and not isinstance(sent, bool) else 0
        elif action == "auth.denied":
            c["refused"] += 1
    people = [
        Total(orgs.get(who, ""), who, **c)
        for who, c in sorted(counts.items(), key=lambda i: (orgs.get(i[0], ""), i[0]))
    ]
    agencies: dict[str, dict[str, int]] = {}
    for t in people:
        a = agencies.setdefault(t.org, dict.fromkeys(COUNTED, 0))
        for name in COUNTED:
            a[name] += getattr(t, name)
    return people, [Total(org, "", **c) for org, c in sorted(agencies.items())]


def concerns(entry: dict[str, Any], kind: str, subject: str, members: dict[str, str]) -> bool:
    """Whether an entry belongs in the report on ``subject`` (an artifact id, or an agency)."""
    if kind == "artifact":
        return bool(entry["artifact"] == subject)
    if entry["org"] == subject:
        return True
    if entry["action"] in DECISIONS:
        details = entry["details"]
        grantee = details.get("grantee")
        agency = members.get(grantee) if isinstance(grantee, str) else None
        return bool(details.get("agency") == subject or agency == subject)
    return False


# --- reading a report file back -------------------------------------------------------------


@dataclass
class _Parsed:
    attrs: dict[str, str] = field(default_factory=dict)
    checkpoint: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    totals: list[dict[str, str]] = field(default_factory=list)
    evidence: list[tuple[str, str, str]] = field(default_factory=list)  # index, leaf, proof


class _Reader(HTMLParser):
    """Collects the report's data parts; text only inside the two kinds of ``<pre>`` it reads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = _Parsed()
        self._pre: str | None = None
        self._text: list[str] = []
        self._evidence: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "main" and a.get("id") == "review":
            self.found.attrs = a
        elif tag == "tr" and "entry" in classes:
            self.found.rows.append(_int(a.get("data-index", ""), "a listed entry's index"))
        elif tag == "tr" and ("total" in classes or "agency-total" in classes):
            self.found.totals.append(a)
        elif tag == "div" and "evidence" in classes:
            self._evidence = (a.get("data-index", ""), a.get("data-leaf", ""))
        elif tag == "pre" and (a.get("id") == "checkpoint" or "tlog-proof" in classes):
            self._pre, self._text = ("checkpoint" if a.get("id") == "checkpoint" else "proof"), []

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != "pre" or self._pre is None:
            return
        text = "".join(self._text)
        if self._pre == "checkpoint":
            self.found.checkpoint.append(text)
        elif self._evidence is not None:
            self.found.evidence.append((*self._evidence, text))
            self._evidence = None
        self._pre = None


def _int(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise ReportError(f"{what} is not a number: {text[:20]!r}")
    return int(text)


def _time(text: str, what: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ReportError(
            f"the report's {what} is not an RFC 3339 UTC time: {text[:40]!r}"
        ) from None


@dataclass(frozen=True)
class Verdict:
    """A report that verified: its subject, window, how many entries, and the checkpoint."""

    kind: str
    subject: str
    entries: int
    size: int
    origin: str

    def line(self) -> str:
        return (
            f"ok: the review of {self.kind} {self.subject} lists {self.entries} entries, each "
            f"proven in the checkpoint of {self.size} entries signed by {self.origin}, and its "
            "totals match them (that no entry was left out is not provable with this log version)"
        )


def read_report(data: bytes) -> _Parsed:
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"the file is over {MAX_REPORT_BYTES} bytes")
    reader = _Reader()
    try:
        reader.feed(data.decode("utf-8"))
        reader.close()
    except UnicodeDecodeError:
        raise ReportError("the file is not UTF-8") from None
    found = reader.found
    if not found.attrs or len(found.checkpoint) != 1:
        raise ReportError("the file is not a review report (no subject or no single checkpoint)")
    return found


def _evidence(
    found: _Parsed, policy: trust.Policy
) -> tuple[trust.VerifiedCheckpoint, dict[int, dict[str, Any]]]:
    """The verified checkpoint, and every proven entry by index."""
    signed = found.checkpoint[0]
    verified = trust.verify_checkpoint(signed, policy)
    proven: dict[int, dict[str, Any]] = {}
    for index_text, leaf_b64, proof_text in found.evidence:
        index = _int(index_text, "an evidence index")
        try:
            leaf = base64.b64decode(leaf_b64, validate=True)
            entry = leaves.decode_leaf(leaf)
            proof = tlogproof.parse_proof(proof_text)
        except (binascii.Error, ValueError) as exc:
            raise ReportError(f"the evidence of entry {index} is malformed: {exc}") from None
        if entry["index"] != index or proof.index != index or index in proven:
            raise ReportError(f"the evidence of entry {index} names another entry, or repeats one")
        if proof.checkpoint != signed:
            raise ReportError(f"the proof of entry {index} is against another checkpoint")
        tlogproof.verify_proof(proof, policy, leaf=leaf)
        proven[index] = entry
    return verified, proven


def verify_report(data: bytes, policy: trust.Policy) -> Verdict:
    """Check a report file offline (see the design note); :class:`ReportError` or a
    :class:`~gateway.audit.trust.CheckpointRefused` says what failed."""
    found = read_report(data)
    kind, subject = found.attrs.get("data-kind", ""), found.attrs.get("data-subject", "")
    if kind not in ("artifact", "agency") or not subject:
        raise ReportError("the report names no artifact or agency as its subject")
    start = _time(found.attrs.get("data-from", ""), "window start")
    end = _time(found.attrs.get("data-to", ""), "window end")
    verified, proven = _evidence(found, policy)
    if sorted(found.rows) != sorted(proven) or len(set(found.rows)) != len(found.rows):
        raise ReportError("the entries listed are not exactly the entries proven")
    entries = [proven[i] for i in sorted(proven)]
    members = agency_members(entries)
    for e in entries:
        when = leaves.utc_naive(datetime.fromisoformat(e["time"].replace("Z", "+00:00")))
        if not start <= when < end:
            raise ReportError(f"entry {e['index']} falls outside the report's window")
        if not concerns(e, kind, subject, members):
            raise ReportError(f"entry {e['index']} does not concern {kind} {subject}")
    _check_totals(found.totals, entries)
    cp = verified.checkpoint
    return Verdict(kind, subject, len(entries), cp.size, cp.origin)


def _check_totals(rows: list[dict[str, str]], entries: list[dict[str, Any]]) -> None:
    people, agencies = tally(entries)
    expected = {(t.org, t.actor): t.counts() for t in people + agencies}
    shown: dict[tuple[str, str], tuple[int, ...]] = {}
    for row in rows:
        key = (row.get("data-org", ""), row.get("data-actor", ""))
        shown[key] = tuple(
            _int(row.get(f"data-{name}", ""), f"a total's {name}") for name in COUNTED
        )
    if shown != expected:
        raise ReportError("the totals do not match the proven entries")


def policy_for(key: str | None, policy_file: Path | None) -> trust.Policy:
    """A tlog-policy file, or the log's verifier key alone (no witness quorum)."""
    if policy_file is not None:
        return trust.parse_policy(policy_file.read_bytes())
    if not key:
        raise ReportError("give the log's verifier key (--key) or a tlog-policy (--policy)")
    text = Path(key).read_text("utf-8").strip() if Path(key).is_file() else key.strip()
    return trust.parse_policy(f"log {text}\nquorum none\n")


@click.command("verify-report")
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key",
    default=None,
    envvar="GATEWAY_AUDIT_KEY",
    help="the log's verifier key (vkey string, or a file holding it); never taken from the gateway",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a tlog-policy (log key, witnesses, quorum) instead of --key",
)
def verify_report_command(report: Path, key: str | None, policy_file: Path | None) -> None:
    """Check an exported 30-day review report offline: every entry proven, totals matching."""
    try:
        policy = policy_for(key, policy_file)
        with open(report, "rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
        verdict = verify_report(data, policy)
    except (ReportError, trust.CheckpointRefused, trust.PolicyError) as exc:
        click.echo(f"FAILED: {exc}")
        fail("the review report does not verify")
    except OSError as exc:
        fail(f"{exc.filename or report}: {exc.strerror or exc}")
    click.echo(verdict.line())


if __name__ == "__main__":  # pragma: no cover - ``python -m gateway.web.report FILE --key VKEY``
    verify_report_command()
