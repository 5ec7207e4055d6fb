"""``gateway push DIR``: a model directory as one age-encrypted tar archive, resumable.

Design note. The directory is planned first (:func:`gateway.tree.plan_tree`: regular
files and directories only, names checked, a sorted and deterministic order), then made
into the plaintext of one age file by :func:`gateway.tree.age_file_from`, which reads
each file as the archive reaches it and encrypts as it goes: nothing is staged on disk.
The per-file commitments (:func:`gateway.manifest.file_commit`) are computed on the way
and become the version 2 manifest's ``plaintext.files``; the archive's own commitment
(:func:`gateway.manifest.archive_hasher` over the transcript of
:mod:`gateway.tree.commit`) is ``plaintext.archive``.

Resume: the push state (:mod:`gateway.client.state`) keeps the upload, the file key and
nonce, the plan's fingerprint (every member's path, size, device, inode and
modification time) and each file's commitment as it is made. A push run again on an
unchanged directory starts the archive at the first part the gateway lacks
(:func:`resume_part`; sealing is deterministic under the same key and nonce, so the
stored parts are what it would make), reading no file before it; the commitments of
those files come from the state. A directory that changed in any file starts a new
upload.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway import manifest as manifests
from gateway.age import stream
from gateway.age.stream import CHUNK, SEALED
from gateway.client import push as pushing
from gateway.client import state
from gateway.client.errors import PushError
from gateway.client.http import Api
from gateway.client.parts import PartSender, send_parts
from gateway.client.progress import Meter
from gateway.tree import (
    TreeError,
    age_file_from,
    archive_commitment,
    archive_size,
    file_entries,
    oms,
    plan_tree,
)
from gateway.tree.plan import FILE, Plan
from gateway.tree.tarfmt import Layout

EXCLUDE = (".git",)
"""Left out of a pushed directory: version control (as OpenSSF Model Signing leaves it)."""


class FileMeter(Meter):
    """A :class:`Meter` whose label names the file being read."""

    def describe(self, label: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=label)


def plan(req: pushing.PushRequest) -> Plan:
    """The directory's plan; PushError names a path that cannot travel, or an empty tree."""
    try:
        planned = plan_tree(req.path, exclude=EXCLUDE)
    except TreeError as exc:
        raise PushError(exc.detail) from None
    if not any(True for _ in planned.files()):
        raise PushError(f"{req.path}: holds no file to push")
    return planned


def identity(planned: Plan) -> state.FileIdentity:
    """The state's identity of a directory: its path and the archive's size (the plan's
    fingerprint, kept beside it, notices any change inside)."""
    return state.FileIdentity(path=planned.root, size=archive_size(planned), mtime_ns=0, inode=0)


def start_or_resume(
    api: Api,
    req: pushing.PushRequest,
    planned: Plan,
    *,
    resume: str | None = None,
    note: Callable[[str], None] = lambda s: None,
) -> state.PushState:
    """The push to carry on with: the one named, an interrupted one of this tree, or a new one."""
    ident, tree = identity(planned), planned.fingerprint()
    if resume:
        saved = state.find(resume)
        if saved.file != ident or saved.tree != tree:
            raise PushError(
                f"{req.path} is not the directory upload {resume} was pushing, or it changed since"
            )
        pushing.same_custody(saved, req)
        if not pushing.resumable(api, saved, ident):
            raise PushError(f"upload {resume} can no longer be resumed (it is not open)")
        note(f"resuming upload {saved.upload}")
        return saved
    found = state.load(api.url, ident.path)
    if found is not None:
        pushing.same_custody(found, req)
        if found.tree == tree and pushing.resumable(api, found, ident):
            note(f"resuming upload {found.upload} (interrupted earlier)")
            return found
        why = "the directory changed since" if found.tree != tree else "it cannot be resumed"
        note(f"the interrupted upload {found.upload} is not resumed ({why}); starting again")
        pushing.abort_quietly(api, found)
    return pushing.begin(api, req, ident, tree=tree)


def resume_part(
    existing: dict[int, tuple[int, str]],
    saved: state.PushState,
    planned: Plan,
    total: int,
) -> int:
    """The part to start sending at: the first the gateway lacks, or an earlier one so
    that every file before where the archive restarts has its commitment in the state."""
    parts = max(1, -(-total // saved.part_size))
    first = next(
        (
            n
            for n in range(1, parts + 1)
            if existing.get(n, (-1, ""))[0]
            != min(saved.part_size, total - (n - 1) * saved.part_size)
        ),
        parts + 1,
    )
    first = min(first, parts)  # all stored: read the last again, the gateway's copy is kept
    known = saved.commitments or {}
    layout = Layout(planned.members)
    prefix = len(saved.header_bytes) + len(saved.nonce_bytes)
    size = archive_size(planned)
    for part in range(first, 1, -1):
        into = (part - 1) * saved.part_size - prefix
        if into < 0:
            break
        chunk = min(into // SEALED, max(stream.chunk_count(size) - 1, 0))
        before = planned.members[: layout.at(chunk * CHUNK)]
        if all(m.path in known for m in before if m.kind == FILE):
            return part
    return 1


EVERY_FILE = 1000
"""Up to this many files, the push state is saved after each; beyond, once a second."""


class _Keeper:
    """Keeps each file's commitment in the push state as it is made, so a resumed push
    need not read the files before where it restarts (one a file is missing from is read)."""

    def __init__(self, saved: state.PushState) -> None:
        self.saved = saved
        self.kept: dict[str, str] = dict(saved.commitments or {})
        self.last = time.monotonic()

    def add(self, path: str, commitment: bytes) -> None:
        self.kept[path] = commitment.hex()
        if len(self.kept) <= EVERY_FILE or time.monotonic() - self.last >= 1.0:
            self.flush()

    def flush(self) -> None:
        self.saved = replace(self.saved, commitments=dict(self.kept))
        state.save(self.saved)
        self.last = time.monotonic()


def upload_tree(
    api: Api,
    saved: state.PushState,
    req: pushing.PushRequest,
    planned: Plan,
    run: pushing.PushRun | None = None,
    note: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Archive, encrypt and send the parts the gateway lacks; the directory manifest to sign."""
    existing = pushing.stored_parts(api, saved.upload)
    header, key, nonce = saved.header_bytes, saved.file_key_bytes, saved.nonce_bytes
    size = archive_size(planned)
    total = pushing.expected_size(len(header), size)
    first = resume_part(existing, saved, planned, total)
    if first > 1:
        note(f"parts 1 to {first - 1} are stored: reading the tree from part {first} on")
    files = [m.path for m in planned.files()]
    order = {path: i for i, path in enumerate(files)}
    label = f"push {req.name}"
    keeper = _Keeper(saved)
    meter = FileMeter(f"{label}: {files[0]} (1/{len(files)})", total, enabled=req.progress)
    with meter:
        sender = PartSender(api, saved.upload, existing, meter.advance, on_retry=_noting(meter))
        if run is not None:
            run.saved, run.sender = saved, sender
            run.parts = max(1, -(-total // saved.part_size))
            sender.stored.update(range(1, first))
        meter.advance((first - 1) * saved.part_size)

        def on_file(path: str, commitment: bytes) -> None:
            keeper.add(path, commitment)
            at = order.get(path, -1) + 1
            if at < len(files):
                meter.describe(f"{label}: {files[at]} ({at + 1}/{len(files)})")

        src, pieces = age_file_from(
            planned,
            stream.payload_key(key, nonce),
            header + nonce,
            (first - 1) * saved.part_size,
            commit=manifests.file_commit(key),
            on_file=on_file,
        )
        try:
            sent = send_parts(pieces, saved.part_size, sender, req.jobs, first=first)
        except TreeError as exc:
            raise PushError(exc.detail) from None
        finally:
            src.close()
            keeper.flush()
    digests = [bytes.fromhex(existing[n][1]) for n in range(1, first)] + sent
    commitments = {p: bytes.fromhex(c) for p, c in keeper.kept.items()}
    commitments.update(src.commitments)
    return _manifest(saved, planned, total, digests, commitments, key)


def _manifest(
    saved: state.PushState,
    planned: Plan,
    total: int,
    digests: list[bytes],
    commitments: dict[str, bytes],
    key: bytes,
) -> dict[str, Any]:
    return {
        "version": 2,
        "upload": saved.upload,
        "name": saved.name,
        "kind": saved.kind,
        "ciphertext": {
            "size": total,
            "part_size": saved.part_size,
            "parts_sha256": hashlib.sha256(b"".join(digests)).hexdigest(),
        },
        "plaintext": {
            "size": archive_size(planned),
            "archive": archive_commitment(
                planned.members, commitments, manifests.archive_hasher(key)
            ).hex(),
            "files": [
                {"path": f.path, "size": f.size, "commitment": f.commitment.hex()}
                for f in file_entries(planned.members, commitments)
            ],
        },
    }


def _noting(meter: Meter) -> Callable[[Any, float], None]:
    def note(exc: Any, delay: float) -> None:
        meter.note(f"{exc.detail}; trying again in {delay:.1f} s")

    return note


def push_directory(
    api: Api,
    req: pushing.PushRequest,
    sign: Callable[[dict[str, Any]], str],
    *,
    resume: str | None = None,
    note: Callable[[str], None] = lambda s: None,
    run: pushing.PushRun | None = None,
) -> dict[str, Any]:
    """The whole push of the directory ``req.path``; the artifact the gateway made of it."""
    if req.oms_key is not None:
        sign_oms(req.path, req.oms_key, note)
    planned = plan(req)
    saved = start_or_resume(api, req, planned, resume=resume, note=note)
    if run is not None:
        run.saved = saved
    manifest = upload_tree(api, saved, req, planned, run, note)
    return pushing.complete(api, saved, manifest, sign)


def sign_oms(root: Path, key: Path, note: Callable[[str], None]) -> None:
    """Sign ``root`` with OpenSSF Model Signing (``root/model.sig``) under the EC ``key``.

    A ``model.sig`` already there (a push run again) is kept if it verifies under the
    key's public half, and refused otherwise: a signature is never replaced silently.
    """
    try:
        if not (root / oms.SIGNATURE).exists():
            oms.sign_directory(root, key)
            note(f"signed {root} with OpenSSF Model Signing: {root / oms.SIGNATURE}")
            return
        oms.verify_directory(root, oms.PublicKey(_public_pem(key)))
    except TreeError as exc:
        raise PushError(
            f"OpenSSF Model Signing: {exc.detail}",
            hint=f"remove {root / oms.SIGNATURE} to sign the directory again",
        ) from None
    note(f"{root / oms.SIGNATURE} already signs this directory under {key}")


def _public_pem(key: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise PushError(f"{key}: not a readable PEM private key ({exc})") from None
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
