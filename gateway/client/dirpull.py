"""``gateway pull ART -o DIR``: restore a directory artifact, every file verified as written.

Design note. A directory artifact's manifest lists each file (``plaintext.files``: path,
size, keyed commitment) and the archive's commitment (``plaintext.archive``). The age
file is decrypted as it arrives (:class:`gateway.client.pull.Decrypting`, each 64 KiB
chunk authenticated) into an :class:`gateway.tree.ExtractSink`, which writes only inside
``DIR`` and gives a file its name only once its commitment, keyed by the file key just
unwrapped, equals the manifest's (:mod:`gateway.tree.extract`). A mismatch names the
file; the file being written is deleted, and what is left is the files already
verified and ``DIR/.gateway-incoming/journal`` recording them, so an unfinished
directory always shows it. A pull run again resumes from the chunk the journal names
(:func:`gateway.tree.resume_chunk`).

When the manifest lists ``model.sig`` at the top, the directory carries an OpenSSF
Model Signing signature. It is verified after extraction
(:func:`gateway.tree.oms.verify_directory`) under the keys the lab registered with the
gateway, fetched before the download starts (:func:`gateway.client.omskeys.registered`),
or under the one ``--oms-key PUB`` gives, which overrides them; the result is said beside
the manifest check: verified (by which key), FAILED (naming what differs: the pull fails),
or, when the lab registered none, not checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import manifest as manifests
from gateway.age.stream import CHUNK
from gateway.client import humane, omskeys
from gateway.client import pull as pulling
from gateway.client.agehdr import Identities
from gateway.client.errors import (
    ClientError,
    InvocationError,
    PullError,
    TransferStopped,
    WriteFailed,
)
from gateway.client.http import Api, ApiError
from gateway.client.progress import Meter
from gateway.client.pull import Sleep
from gateway.client.pullout import ENDED, INTERRUPTED, PullCommand
from gateway.tree import (
    ArchiveCheck,
    Extracted,
    ExtractError,
    ExtractSink,
    FileEntry,
    ResumeError,
    TreeError,
    oms,
    resume_chunk,
)
from gateway.tree.journal import JOURNAL
from gateway.tree.names import RESERVED
from gateway.tui import hint, say

STAGING = RESERVED


def is_tree(manifest: dict[str, Any]) -> bool:
    """Whether ``manifest`` is a directory artifact's (version 2 with ``plaintext.files``)."""
    return "files" in (manifest.get("plaintext") or {})


def check_directory(output: str) -> Path:
    """``-o DIR`` for a directory artifact: new, empty, or an interrupted pull's."""
    out = Path(output)
    try:
        st = out.lstat()
    except FileNotFoundError:
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise InvocationError(
                f"{parent} is not a directory: nowhere to make {out.name}"
            ) from None
        return out
    if not stat.S_ISDIR(st.st_mode):
        raise InvocationError(
            f"{out} exists and is not a directory: a directory artifact is restored into one",
            hint="give a new directory name with -o",
        )
    names = os.listdir(out)
    if names and STAGING not in names:
        raise InvocationError(f"{out} is not empty", hint="give a new or empty directory with -o")
    return out


def staging(out: Path) -> Path:
    return out / STAGING


def interrupted(out: Path) -> bool:
    return (staging(out) / JOURNAL).is_file()


def entries(manifest: dict[str, Any]) -> list[FileEntry]:
    return [
        FileEntry(str(f["path"]), int(f["size"]), bytes.fromhex(str(f["commitment"])))
        for f in manifest["plaintext"]["files"]
    ]


class _Null:
    """The single-file digest :class:`Decrypting` feeds; a directory is checked per file."""

    def update(self, data: bytes | memoryview, /) -> None:
        return None


@dataclass(frozen=True)
class Restored:
    extracted: Extracted
    oms: oms.Verified | None
    signed: bool  #: the manifest lists ``model.sig``
    oms_key: omskeys.Key | None = None  #: the key ``model.sig`` verified under


def pull_tree(
    api: Api,
    artifact: str,
    manifest: dict[str, Any],
    identities: Identities,
    out: Path,
    progress: bool | None,
    label: str,
    *,
    oms_keys: Sequence[omskeys.Key] = (),
    sleep: Sleep = time.sleep,
) -> Restored:
    """Decrypt and extract the artifact into ``out`` (resuming it); what was restored.

    PullError names a file that does not match the signed manifest, or a hostile archive,
    or (when ``model.sig`` travels and ``oms_keys`` are given) what does not match the
    model signature under any of them.
    """
    files = entries(manifest)
    opened, first = pulling.open_file(api, artifact, identities)
    start = _start_chunk(out)
    sink = ExtractSink(
        out,
        files,
        manifests.file_commit(opened.file_key),
        start_chunk=start,
        archive=ArchiveCheck(
            bytes.fromhex(manifest["plaintext"]["archive"]),
            manifests.archive_hasher(opened.file_key),
        ),
    )
    size = int(manifest["plaintext"]["size"])
    with Meter(label, size, enabled=progress) as meter:
        if start:
            meter.note(
                f"resuming: {out} already holds {humane.size(start * CHUNK)} of {humane.size(size)}"
            )
        meter.advance(start * CHUNK)
        job = pulling.Decrypting(
            api,
            artifact,
            opened,
            sink,  # type: ignore[arg-type]  # a write end, all Decrypting uses
            _Null(),
            meter.advance,
            first,
            sleep=sleep,
        )
        job.done = job.done_written = start
        job.note = meter.note
        try:
            job.run()
        except TreeError as exc:  # the extractor refused what it was given
            _abort(sink)
            raise PullError(_refusal(exc, out)) from None
        except BaseException:
            _abort(sink)
            raise
    try:
        extracted = sink.close()
    except TreeError as exc:
        raise PullError(_refusal(exc, out)) from None
    signed = any(f.path == oms.SIGNATURE for f in files)
    if not signed or not oms_keys:
        return Restored(extracted, None, signed)
    verified, key = _check_oms(out, oms_keys)
    return Restored(extracted, verified, signed, key)


def _abort(sink: ExtractSink) -> None:
    """Stop the extraction; an error it already stopped with is the one being reported."""
    with contextlib.suppress(TreeError):
        sink.abort()


def _start_chunk(out: Path) -> int:
    if not interrupted(out):
        return 0
    try:
        return resume_chunk(out)
    except TreeError as exc:
        raise PullError(_refusal(exc, out)) from None


def _refusal(exc: TreeError, out: Path) -> str:
    left = (
        f"; the files verified so far are in {out}, recorded in {staging(out) / JOURNAL}"
        if interrupted(out)
        else ""
    )
    what = "refused" if isinstance(exc, ExtractError | ResumeError) else "stopped"
    return f"{what}: {exc.detail}{left}"


def _check_oms(out: Path, keys: Sequence[omskeys.Key]) -> tuple[oms.Verified, omskeys.Key]:
    """The first key in force ``model.sig`` verifies under; else PullError saying what differs.

    Revocation is checked first, whatever material is in force (:func:`_refuse_revoked`).
    Under a key that did not sign, the signature itself fails; under the one that did, a
    changed file is named. The refusal that names files is the one reported. ``model.sig``
    is read once (:func:`gateway.tree.oms.read_signature`): the bundle judged for revocation
    is the one verified; one that cannot be read is refused.
    """
    try:
        signature = oms.read_signature(out)
    except TreeError as exc:
        raise PullError(
            f"model signature: FAILED: {exc.detail}; every file in {out} matches the lab's "
            "signed manifest, but its OpenSSF model signature cannot be checked"
        ) from None
    _refuse_revoked(out, signature, keys)
    refusals: list[str] = []
    active = [k for k in keys if k.revoked_at is None]
    for key in active:
        try:
            return oms.verify_directory(out, key.material(), signature), key
        except TreeError as exc:
            refusals.append(exc.detail)
    # a key that did not sign says "Key mismatch ... does not match the provided public key"
    named = [r for r in refusals if "does not match" in r and "Key mismatch" not in r]
    said = (named or refusals or ["no material in force verifies it"])[-1]
    tried = (
        active[0].source
        if len(active) == 1
        else f"any of the {len(active)} keys the lab registered"
    )
    raise PullError(
        f"model signature: FAILED under {tried}: {said}; every file in {out} matches the "
        "lab's signed manifest, but not its OpenSSF model signature"
    )


def _refuse_revoked(out: Path, signature: oms.Signature, keys: Sequence[omskeys.Key]) -> None:
    """PullError if ``model.sig`` was made under revoked material: its bundle carries, or
    was issued by, a certificate revoked with a chain (one no chain in force holds), or
    one with such a certificate's public key (no chain in force holding that key), its
    signing certificate has a revoked key, or its signature verifies under a revoked key.

    Checked on the bundle, not by which material verifies it: a chain in force that shares
    a revoked chain's root verifies the revoked intermediate's signatures too.
    """
    revoked = [k for k in keys if k.revoked_at is not None]
    if not revoked:
        return
    active = [c for k in keys if k.revoked_at is None for c in k.certificates.values()]
    held = {oms.certificate_fingerprint(c) for c in active}
    held_keys = {kfp for c in active if (kfp := oms.key_fingerprint(c)) is not None}
    certs = {fp: (c, k) for k in revoked for fp, c in k.certificates.items() if fp not in held}
    carried = list(signature.certificates)
    hit = oms.revoked_signer(carried, {fp: c for fp, (c, _) in certs.items()}, held_keys)
    if hit is not None:
        _revoked(out, certs[hit][1], f": its bundle holds or chains to certificate {hit}")
    bare = [k for k in revoked if not k.chain]
    if carried:
        leaf = omskeys.fingerprint(
            carried[0].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
            oms.SIGNATURE,
        )
        for key in (k for k in bare if k.fingerprint == leaf):
            _revoked(out, key, ": its signing certificate certifies that key")
        return
    for key in bare:
        if oms.signed_by(signature, oms.PublicKey(key.pem)):
            _revoked(out, key, "")


def _revoked(out: Path, key: omskeys.Key, why: str) -> NoReturn:
    raise PullError(
        f"model signature: FAILED: signed by a revoked key {key.fingerprint} (revoked "
        f"{key.revoked_at}){why}; every file in {out} matches the lab's signed manifest, but "
        "its OpenSSF model signature is under material the lab no longer stands behind"
    )


def pull_command(
    api: Api,
    info: dict[str, Any],
    identities: Identities,
    command: PullCommand,
    quiet: bool,
    oms_key: Path | None = None,
    trust_new: bool = False,
) -> None:
    """``gateway pull ART -o DIR`` once the manifest is trusted: restore, then say what was.

    ``oms_key`` (``--oms-key PUB``) overrides the OMS keys the lab registered; ``trust_new``
    (``--trust-new-key``) accepts registered material not pinned here before.
    """
    out, manifest = command.output, info.get("manifest") or {}
    keys = _oms_keys(api, info, manifest, oms_key, trust_new)
    try:
        restored = pull_tree(
            api,
            str(info["id"]),
            manifest,
            identities,
            out,
            False if quiet else None,
            f"pull {info['name']}",
            oms_keys=keys,
        )
    except (ClientError, KeyboardInterrupt) as exc:
        raise _stopped(exc, command) from None
    files = len(manifest["plaintext"]["files"])
    say(
        f"{out}: {files} files, {humane.size(int(manifest['plaintext']['size']))} archived, "
        f"each file's keyed commitment checked: {manifest.get('name')} "
        f"(upload {manifest.get('upload')}), signed by {info['org']}"
    )
    _say_oms(out, restored)


def _oms_keys(
    api: Api, info: dict[str, Any], manifest: dict[str, Any], given: Path | None, trust_new: bool
) -> list[omskeys.Key]:
    """The keys to check ``model.sig`` under: ``--oms-key``'s, else those the lab registered."""
    if not any(str(f.get("path")) == oms.SIGNATURE for f in manifest["plaintext"]["files"]):
        return []
    if given is not None:
        return [omskeys.given(given)]
    return omskeys.registered(api, str(info["org"]), trust_new=trust_new)


def _say_oms(out: Path, restored: Restored) -> None:
    if restored.oms is not None and restored.oms_key is not None:
        key, covered, left = restored.oms_key, restored.oms.covered, restored.oms.not_covered
        say(
            f"{out}: model signature: verified by {key.source} {key.fingerprint}: "
            f"{len(covered)} files signed" + (f", {len(left)} not covered" if left else "")
        )
    elif restored.signed:
        say(f"{out}: model signature: none registered: not checked")
        hint(
            "the lab has registered no OpenSSF model signing key (gateway oms-key register); "
            "check model.sig with --oms-key PUB, the lab's public key (PEM)"
        )


def _stopped(exc: BaseException, command: PullCommand) -> ClientError:
    """What a directory pull that stopped says: what is left in DIR, the command that resumes."""
    out = command.output
    again = f"run `{command.line()}` to resume"
    kept = (
        f"the files verified so far are in {out}, recorded in {staging(out) / JOURNAL}"
        if interrupted(out)
        else f"nothing is kept in {out}"
    )
    if isinstance(exc, KeyboardInterrupt):
        return TransferStopped(f"interrupted; {kept}", hint=again, exit_code=INTERRUPTED)
    if isinstance(exc, PullError):
        return TransferStopped(exc.detail, hint=exc.hint)
    if isinstance(exc, WriteFailed) or (isinstance(exc, ApiError) and exc.status not in ENDED):
        return TransferStopped(f"{exc.detail}; {kept}", hint=again)
    assert isinstance(exc, ClientError)
    return exc
