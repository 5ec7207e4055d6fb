"""Anchoring: checkpoints cosigned by the witnesses, and what they cover, published write-once.

Every ``audit.anchor_every_entries`` entries or ``audit.anchor_every_minutes`` minutes
(whichever comes first, checked by the sweeper), the log's head is signed (never over a
history the last signed checkpoint does not extend), submitted to the witnesses of
``[audit]``, and, once their quorum cosigned it (:mod:`gateway.services.cosigning`),
published to the audit archive — an S3 bucket under Object Lock in COMPLIANCE mode, or a
directory of read-only files on ``local`` — together with the entries added since the last
anchor, as export segments (the entry lines of an export,
:func:`gateway.audit.verify.entry_lines`, at most :data:`SEGMENT` entries each), and the
C2SP tlog-tiles of the growth (hash tiles and entry bundles, at their tlog-tiles paths), so
the archive is itself a tiled log. Only then does the gateway serve the new checkpoint.
While the quorum is not met (a witness down, or refusing), nothing is published: the next
sweep tries again. Each publication first appends an ``audit.heads`` entry
(:func:`gateway.services.auditlog.record_heads`; not again while the newest entry is one,
so a witness outage adds no entries), so every published checkpoint pins every org's
chain at its last entry. Names sort by tree size:

    entries-<first index:012d>-<end index:012d>.jsonl
    checkpoint-<size:012d>-<UTC time>.txt
    tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]

:func:`check_published` proves the live log extends every published checkpoint: the
root of the live log's first ``size`` entries must equal each checkpoint's root, so a
log rewritten, truncated or reordered after an anchor is caught even by an operator
who controls the database and the signing key. A log with entries but no published
checkpoint fails the check: nothing outside the database vouches for it.

What resists whom: the S3 archive's objects are under Object Lock in COMPLIANCE mode,
which even the bucket's owner cannot delete or overwrite before the retention ends. The
``local`` archive's files are read-only (0400), which stops mistakes, not an operator:
whoever can unlink them can delete anchors, and the check can then only see the ones
left (it names the newest, so a reader can compare it with one they saved). Neither stops
an operator who rewrites the database and re-signs: the witnesses do, since they cosign
only checkpoints that extend the last one they cosigned.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.audit import merkle, note, tiles, verify
from gateway.audit import store as audit_store
from gateway.audit.leaf import HEADS_ACTION
from gateway.runtime import Runtime
from gateway.services import auditlog, cosigning
from gateway.storage.archive import AuditArchive, make_archive

log = logging.getLogger("gateway.audit")

SEGMENT = 10_000
_CHECKPOINT = re.compile(r"^checkpoint-(\d{12})-(\d{8}T\d{6}Z)\.txt$")


def archive(gw: Runtime) -> AuditArchive:
    return make_archive(gw.storage_settings)


def published(names: list[str]) -> list[tuple[int, datetime, str]]:
    """Published checkpoints as ``(size, time, name)``, by size."""
    out = []
    for name in names:
        m = _CHECKPOINT.match(name)
        if m:
            out.append((int(m.group(1)), datetime.strptime(m.group(2), "%Y%m%dT%H%M%SZ"), name))
    return sorted(out)


def publish(gw: Runtime, *, force: bool = False) -> str | None:
    """Publish an anchor if one is due (or ``force``); returns the checkpoint's name, if any.

    None also while the witnesses' quorum has not cosigned the checkpoint (logged): the
    anchor is still due, and the next call tries again.
    """
    cfg = gw.config.audit
    target = archive(gw)
    done = published(target.list_names())
    last_size, last_time = (done[-1][0], done[-1][1]) if done else (0, None)
    now = gw.now()
    with gw.db.session() as session:
        size = audit_store.size(session)
    if size == 0 or size <= last_size:
        return None
    due_by_count = cfg.anchor_every_entries > 0 and size - last_size >= cfg.anchor_every_entries
    due_by_time = cfg.anchor_every_minutes > 0 and (
        last_time is None or now - last_time >= timedelta(minutes=cfg.anchor_every_minutes)
    )
    if not (force or due_by_count or due_by_time):
        return None
    if _heads_due(gw):
        auditlog.record_heads(gw)  # what is published pins each org's latest index
    cosigned = _cosigned(gw)
    if cosigned is None:
        return None
    size = cosigned.checkpoint.size
    _publish_growth(gw, target, last_size, size)
    name = f"checkpoint-{size:012d}-{now.strftime('%Y%m%dT%H%M%SZ')}.txt"
    target.publish(name, cosigned.note.encode())
    cosigning.record_published(gw, cosigned)
    return name


def _heads_due(gw: Runtime) -> bool:
    """Whether the newest entry is not already a heads entry (the end of a publication's run)."""
    with gw.db.session() as session:
        size = audit_store.size(session)
        newest = [leaf for _, leaf in audit_store.iter_leaves(session, max(0, size - 1), size)]
    return not newest or json.loads(newest[0]).get("action") != HEADS_ACTION


def _cosigned(gw: Runtime) -> cosigning.Signed | None:
    """The head, signed and cosigned by the witnesses' quorum; None (logged) if not yet."""
    witnesses = cosigning.log_witnesses(gw)
    signed = cosigning.sign_latest(gw)
    if not witnesses.required:
        return signed
    result = cosigning.cosign(gw, signed, witnesses)
    if result.verified is None:
        log.warning(
            "checkpoint of size %d not published, retrying next sweep: %s",
            signed.checkpoint.size,
            result.refused,
        )
        return None
    return cosigning.Signed(signed.checkpoint, result.note)


def _publish_growth(gw: Runtime, target: AuditArchive, start: int, end: int) -> None:
    """The entries ``[start, end)`` as export segments, and the tiles the growth adds."""
    with gw.db.session() as session:
        for first in range(start, end, SEGMENT):
            stop = min(end, first + SEGMENT)
            lines = verify.entry_lines(audit_store.iter_leaves(session, first, stop))
            target.publish(f"entries-{first:012d}-{stop:012d}.jsonl", "".join(lines).encode())
        for tile in tiles.new_tiles(start, end):
            data = tiles.build_hash_tile(tile, lambda ids: audit_store.tile_hashes(session, ids))
            target.publish(tile.path(), data)
        for bundle in tiles.new_bundles(start, end):
            first, stop = bundle.leaf_range()
            leaves = (leaf for _, leaf in audit_store.iter_leaves(session, first, stop))
            target.publish(bundle.path(), tiles.encode_entry_bundle(leaves))


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    checked: int
    message: str


def _published_checkpoints(
    gw: Runtime, vkey: str
) -> list[tuple[str, note.Checkpoint]] | AnchorReport:
    """Every published checkpoint, signature checked, by size; or the report of a bad one."""
    target = archive(gw)
    checkpoints = []
    for size, _when, name in published(target.list_names()):
        try:
            cp = note.open_checkpoint(
                target.get(name).decode(), [vkey], origin=gw.config.audit.origin
            )
        except (note.NoteError, UnicodeDecodeError) as exc:
            return AnchorReport(False, 0, f"published {name} does not verify: {exc}")
        if cp.size != size:
            return AnchorReport(False, 0, f"published {name} holds size {cp.size}, not {size}")
        checkpoints.append((name, cp))
    return checkpoints


def check_published(gw: Runtime, verifier_key: str | None = None) -> AnchorReport:
    """Check the live log against every published checkpoint.

    Each published checkpoint's signature is checked, then the live log's leaves are
    re-hashed from their stored bytes (not from stored subtree hashes, which a rewrite
    could keep) and the root at each published size must equal the published root. A
    non-empty log without any published checkpoint is a failure, not a vacuous success.
    """
    checkpoints = _published_checkpoints(gw, verifier_key or gw.audit_signer.verifier_key)
    if isinstance(checkpoints, AnchorReport):
        return checkpoints
    with gw.db.session() as session:
        live = audit_store.size(session)
        if live and not checkpoints:
            return AnchorReport(
                False,
                0,
                f"the live log has {live} entries but the audit archive holds no published "
                "checkpoint, so nothing outside the database vouches for its history "
                "(publish one with `gateway audit publish --force`)",
            )
        tree = merkle.CompactRange()
        pending = list(checkpoints)
        leaves = audit_store.iter_leaves(session, 0, live)
        while pending:
            name, cp = pending[0]
            if cp.size > live:
                return AnchorReport(
                    False, 0, f"the live log has {live} entries, fewer than published {name}"
                )
            if tree.size == cp.size:
                if tree.root() != cp.root:
                    return AnchorReport(
                        False,
                        0,
                        f"the live log's first {cp.size} entries do not match published "
                        f"{name}: history was rewritten",
                    )
                pending.pop(0)
                continue
            try:
                _index, leaf = next(leaves)
            except audit_store.LogIntegrityError as exc:
                return AnchorReport(False, 0, f"{exc.detail}, before published {name}")
            tree.append(merkle.leaf_hash(leaf))
    n = len(checkpoints)
    newest = f"; the newest covers {checkpoints[-1][1].size} entries" if checkpoints else ""
    return AnchorReport(
        True, n, f"the live log ({live} entries) extends all {n} published checkpoints{newest}"
    )
