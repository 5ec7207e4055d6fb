"""``gateway push``: encrypt a file on this machine, upload the ciphertext, sign, complete.

The plaintext never touches the disk and memory stays at ``jobs x part_size``
(:mod:`gateway.client.parts`). An interrupted push resumes from a 0600 state file
(:mod:`gateway.client.state`) that holds the upload id and, while the push is in
progress, the age file key and nonce: re-encrypting with them reproduces the same
ciphertext, so only the parts the gateway lacks are sent again. The state file is
deleted when the upload completes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import manifest as manifests
from gateway.client import agehdr, state
from gateway.client.errors import PushError
from gateway.client.http import Api, ApiError
from gateway.client.parts import PartSender, Sealed, ciphertext, send_parts
from gateway.client.progress import Meter
from gateway.client.sealing import NONCE, Payload, payload_size

STDIN = "-"


@dataclass(frozen=True)
class PushRequest:
    """What to push. ``data``: the bytes read from standard input (``path`` is then ``-``),
    which cannot be re-read, so such a push keeps no state and does not resume."""

    path: Path
    name: str
    kind: str
    share_with: tuple[str, ...]
    recipients: tuple[str, ...] = ()
    description: str | None = None
    jobs: int = 2
    progress: bool | None = None
    data: bytes | None = None
    oms_key: Path | None = None
    """A directory only: sign it with OpenSSF Model Signing under this EC key first."""
    custody: str = "gateway"
    """``lab``: encrypted to ``recipients`` only; the gateway makes no recipient and holds no key."""

    def identity(self) -> state.FileIdentity:
        if self.data is not None:
            return state.FileIdentity(path=STDIN, size=len(self.data), mtime_ns=0, inode=0)
        return state.FileIdentity.of(self.path)

    def source(self) -> Any:
        """The plaintext, as an unbuffered binary file (or the bytes read from stdin)."""
        if self.data is not None:
            return contextlib.nullcontext(io.BytesIO(self.data))
        return open(self.path, "rb", buffering=0)


@dataclass
class PushRun:
    """How far a push got, for what an interruption says: its upload, the parts stored."""

    saved: state.PushState | None = None
    parts: int = 0
    sender: PartSender | None = None

    @property
    def stored(self) -> int:
        return len(self.sender.stored) if self.sender is not None else 0


def server_int(value: object, what: str, *, least: int = 0) -> int:
    """A JSON integer of at least ``least`` the gateway sent as ``what``; PushError otherwise."""
    if type(value) is not int or value < least:
        raise PushError(f"the gateway sent no usable {what}")
    return value


def stored_parts(api: Api, upload_id: str) -> dict[int, tuple[int, str]]:
    """The parts the gateway says it holds of ``upload_id``: number -> (size, sha256)."""
    return parts_of(api.get(f"/v1/uploads/{upload_id}"))


def parts_of(upload: dict[str, Any]) -> dict[int, tuple[int, str]]:
    """The parts an upload's JSON lists, checked: number -> (size, sha256)."""
    listed = upload.get("parts", [])
    if not isinstance(listed, list):
        raise PushError("the gateway sent no usable list of parts")
    found: dict[int, tuple[int, str]] = {}
    for part in listed:
        if not isinstance(part, dict) or not isinstance(part.get("sha256"), str):
            raise PushError("the gateway sent no usable list of parts")
        number = server_int(part.get("number"), "part number", least=1)
        found[number] = (server_int(part.get("size"), "part size"), part["sha256"])
    return found


def expected_size(header_len: int, plaintext: int) -> int:
    """The age file's size: header, 16-byte nonce, 64 KiB chunks each with a 16-byte tag."""
    return header_len + payload_size(plaintext)


def begin(
    api: Api, req: PushRequest, ident: state.FileIdentity, *, tree: str | None = None
) -> state.PushState:
    """Create the upload and (unless from stdin) the state file that lets it resume;
    ``tree``: a directory's plan fingerprint (:mod:`gateway.client.dirpush`)."""
    extra = list(req.recipients)
    lab = req.custody == "lab"
    if lab and not extra:
        raise PushError("a lab-custody push needs the lab's own recipient (-r AGE1...)")
    gateway_slot = [] if lab else [agehdr.throwaway_recipient()]
    probe = agehdr.new_header(os.urandom(16), [*gateway_slot, *extra])
    body: dict[str, Any] = {
        "name": req.name,
        "kind": req.kind,
        "share_with": list(req.share_with),
        "size": expected_size(len(probe), ident.size),
    }
    if req.description:
        body["description"] = req.description
    if lab:
        body["custody"] = "lab"
    upload = api.post("/v1/uploads", body)
    file_key, nonce = os.urandom(16), os.urandom(NONCE)
    header = agehdr.new_header(file_key, [*([] if lab else [upload["recipient"]]), *extra])
    saved = state.PushState(
        gateway=api.url,
        upload=upload["id"],
        file=ident,
        name=req.name,
        kind=req.kind,
        part_size=server_int(upload.get("part_size"), "part size", least=1),
        header=base64.b64encode(header).decode(),
        nonce=base64.b64encode(nonce).decode(),
        file_key=base64.b64encode(file_key).decode(),
        tree=tree,
        custody=req.custody,
    )
    if req.data is None:
        state.save(saved)
    return saved


def same_custody(saved: state.PushState, req: PushRequest) -> None:
    """PushError unless ``req`` resumes ``saved`` under the custody it was begun with: a
    lab-custody push resumed as a plain one would complete without recording its header."""
    if saved.custody == req.custody:
        return
    how = (
        "with --custody lab and the same -r recipients"
        if saved.custody == "lab"
        else "without --custody lab"
    )
    raise PushError(
        f"upload {saved.upload} of {saved.file.path} was begun under {saved.custody} custody, "
        f"not {req.custody}",
        hint=f"resume it {how}, or discard it: gateway uploads abort {saved.upload} --yes",
    )


def resumable(api: Api, saved: state.PushState, ident: state.FileIdentity) -> bool:
    if saved.file != ident:
        return False
    try:
        upload = api.get(f"/v1/uploads/{saved.upload}")
    except ApiError as exc:
        if exc.status in (404, 410):
            return False
        raise
    return bool(upload.get("state") == "open")


def start_or_resume(
    api: Api,
    req: PushRequest,
    *,
    resume: str | None = None,
    note: Callable[[str], None] = lambda s: None,
) -> state.PushState:
    """The push to carry on with: the one named, an interrupted one of this file, or a new one."""
    ident = req.identity()
    if req.data is not None:
        return begin(api, req, ident)
    if resume:
        saved = state.find(resume)
        if saved.file != ident:
            raise PushError(
                f"{req.path} is not the file upload {resume} was pushing, or it changed since"
            )
        same_custody(saved, req)
        if not resumable(api, saved, ident):
            raise PushError(f"upload {resume} can no longer be resumed (it is not open)")
        note(f"resuming upload {saved.upload}")
        return saved
    saved_or_none = state.load(api.url, ident.path)
    if saved_or_none is not None:
        same_custody(saved_or_none, req)
        if resumable(api, saved_or_none, ident):
            note(f"resuming upload {saved_or_none.upload} (interrupted earlier)")
            return saved_or_none
        note(f"the interrupted upload {saved_or_none.upload} cannot be resumed; starting again")
        abort_quietly(api, saved_or_none)
    return begin(api, req, ident)


def abort_quietly(api: Api, saved: state.PushState) -> None:
    with contextlib.suppress(ApiError):
        api.delete(f"/v1/uploads/{saved.upload}")
    state.delete(saved)


def upload_file(
    api: Api, saved: state.PushState, req: PushRequest, run: PushRun | None = None
) -> dict[str, Any]:
    """Encrypt and send every part; the version 2 manifest to sign. ``run`` learns how far it
    got. The plaintext commitment is keyed by the file key (:mod:`gateway.manifest`)."""
    existing = stored_parts(api, saved.upload)
    header = saved.header_bytes
    total = expected_size(len(header), saved.file.size)
    payload = Payload(saved.file_key_bytes, saved.nonce_bytes)
    # The reader feeds its digest every plaintext byte in order: here, the keyed commitment.
    sealed = Sealed(plaintext=manifests.plaintext_hasher(saved.file_key_bytes))
    with req.source() as fh, Meter(f"push {req.name}", total, enabled=req.progress) as meter:
        if req.identity() != saved.file:
            raise PushError(f"{req.path} changed since the push started")
        sender = PartSender(api, saved.upload, existing, meter.advance, on_retry=_noting(meter))
        if run is not None:
            run.saved, run.sender = saved, sender
            run.parts = max(1, -(-total // saved.part_size))
        pieces = ciphertext(fh, payload, header + payload.nonce, saved.file.size, sealed)
        digests = send_parts(pieces, saved.part_size, sender, req.jobs)
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
        "plaintext": {"size": sealed.size, "commitment": sealed.plaintext.hexdigest()},
    }


def _noting(meter: Meter) -> Callable[[ApiError, float], None]:
    def note(exc: ApiError, delay: float) -> None:
        meter.note(f"{exc.detail}; trying again in {delay:.1f} s")

    return note


def complete(
    api: Api,
    saved: state.PushState,
    manifest: dict[str, Any],
    sign: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    artifact: dict[str, Any] = api.post(
        f"/v1/uploads/{saved.upload}/complete", {"manifest": manifest, "signature": sign(manifest)}
    )
    state.delete(saved)
    return artifact


def push(
    api: Api,
    req: PushRequest,
    sign: Callable[[dict[str, Any]], str],
    *,
    resume: str | None = None,
    note: Callable[[str], None] = lambda s: None,
    run: PushRun | None = None,
) -> dict[str, Any]:
    """The whole push of a file; the artifact the gateway made of it. ``run`` learns how far it got.

    A directory goes as one archive: :func:`gateway.client.dirpush.push_directory`."""
    if req.data is None and not req.path.is_file():
        raise PushError(f"{req.path}: not a regular file")
    saved = start_or_resume(api, req, resume=resume, note=note)
    if run is not None:
        run.saved = saved
    try:
        manifest = upload_file(api, saved, req, run)
        return complete(api, saved, manifest, sign)
    except BaseException:
        if req.data is not None:  # nothing to resume from: the bytes of stdin are gone
            abort_quietly(api, saved)
        raise
