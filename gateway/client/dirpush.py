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
nonce, and the plan's fingerprint (every member's path, size, device, inode and
modification time). A push run again on an unchanged directory re-reads it and makes
the same ciphertext, and only the parts the gateway lacks are sent; a directory that
changed in any file starts a new upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import manifest as manifests
from gateway.age import stream
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
from gateway.tree.plan import Plan

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
        if not pushing.resumable(api, saved, ident):
            raise PushError(f"upload {resume} can no longer be resumed (it is not open)")
        note(f"resuming upload {saved.upload}")
        return saved
    found = state.load(api.url, ident.path)
    if found is not None:
        if found.tree == tree and pushing.resumable(api, found, ident):
            note(f"resuming upload {found.upload} (interrupted earlier)")
            return found
        why = "the directory changed since" if found.tree != tree else "it cannot be resumed"
        note(f"the interrupted upload {found.upload} is not resumed ({why}); starting again")
        pushing.abort_quietly(api, found)
    return pushing.begin(api, req, ident, tree=tree)


def upload_tree(
    api: Api,
    saved: state.PushState,
    req: pushing.PushRequest,
    planned: Plan,
    run: pushing.PushRun | None = None,
) -> dict[str, Any]:
    """Archive, encrypt and send every part; the version 2 directory manifest to sign."""
    existing = {
        int(p["number"]): (int(p["size"]), str(p["sha256"]))
        for p in api.get(f"/v1/uploads/{saved.upload}").get("parts", [])
    }
    header, key, nonce = saved.header_bytes, saved.file_key_bytes, saved.nonce_bytes
    size = archive_size(planned)
    total = pushing.expected_size(len(header), size)
    files = [m.path for m in planned.files()]
    label = f"push {req.name}"
    meter = FileMeter(f"{label}: {files[0]} (1/{len(files)})", total, enabled=req.progress)
    with meter:
        sender = PartSender(api, saved.upload, existing, meter.advance, on_retry=_noting(meter))
        if run is not None:
            run.saved, run.sender = saved, sender
            run.parts = max(1, -(-total // saved.part_size))
        done: list[str] = []

        def on_file(path: str, commitment: bytes) -> None:
            done.append(path)
            if len(done) < len(files):
                meter.describe(f"{label}: {files[len(done)]} ({len(done) + 1}/{len(files)})")

        src, pieces = age_file_from(
            planned,
            stream.payload_key(key, nonce),
            header + nonce,
            0,
            commit=manifests.file_commit(key),
            on_file=on_file,
        )
        try:
            digests = send_parts(pieces, saved.part_size, sender, req.jobs)
        except TreeError as exc:
            raise PushError(exc.detail) from None
        finally:
            src.close()
    commitments = src.commitments
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
            "size": size,
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
    manifest = upload_tree(api, saved, req, planned, run)
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
