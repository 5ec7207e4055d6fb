"""The completion checks: each refuses with 422 naming what failed, and none changes anything.

All parts are present and sized (every part but the last exactly ``part_size``, the total
the declared size); the manifest is a valid version 1 manifest that matches the upload
and the stored parts; its signature verifies under a signing key the lab's organisation
registered; the concatenated parts begin with an age v1 header holding a stanza that the
upload's custody identity opens, the header MAC verifying with the file key. Under lab
custody there is no such identity: the header is checked as far as it can be without the
file key (:func:`gateway.services.lab_custody.check_stored_header`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import age
from gateway import manifest as manifests
from gateway.errors import Unprocessable
from gateway.models import Custody, SigningKey, Upload, UploadPart
from gateway.runtime import Runtime
from gateway.services.custody_keys import custody_identity
from gateway.services.lab_custody import check_stored_header

_FIRST_CHUNK_OVERHEAD = 16 + 16  # the payload's nonce, then at least one chunk's tag


@dataclass(frozen=True)
class Checked:
    """What the checks established: sizes, the manifest and signature, the key that verified it."""

    total: int
    header_size: int
    manifest: dict[str, Any]
    signature: str
    signing_key: str


def check(
    rt: Runtime,
    session: Session,
    upload: Upload,
    parts: list[UploadPart],
    manifest: object,
    signature: object,
) -> Checked:
    """Every completion check, in order; the first that fails refuses with 422."""
    total = check_parts(upload, parts)
    checked = check_manifest(upload, parts, total, manifest)
    signed, signing_key = check_signature(session, upload, checked, signature)
    limit = rt.config.uploads.max_header_bytes
    if upload.custody == Custody.LAB:
        header_size = check_stored_header(upload.header_prefix, total, limit)
    else:
        identity = custody_identity(rt, session, upload.id)
        header_size = check_header(upload, identity, total, limit)
    return Checked(total, header_size, checked, signed, signing_key)


def check_parts(upload: Upload, parts: list[UploadPart]) -> int:
    """The total size of ``parts`` (by number), if they form the whole upload."""
    if not parts:
        raise Unprocessable("no parts have been uploaded")
    numbers = [p.number for p in parts]
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise Unprocessable(f"parts are missing: {', '.join(map(str, missing[:20]))}")
    for p in parts[:-1]:
        if p.size != upload.part_size:
            raise Unprocessable(
                f"part {p.number} is {p.size} bytes; every part but the last must be {upload.part_size}"
            )
    total = sum(p.size for p in parts)
    if upload.expected_size is not None and total != upload.expected_size:
        raise Unprocessable(
            f"the parts hold {total} bytes but the upload declared size {upload.expected_size}"
        )
    return total


def parts_digest(parts: list[UploadPart]) -> str:
    """SHA-256 of the concatenated 32-byte part digests, in part order (the manifest's ``parts_sha256``)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(bytes.fromhex(p.sha256))
    return h.hexdigest()


def check_manifest(
    upload: Upload, parts: list[UploadPart], total: int, manifest: object
) -> dict[str, Any]:
    """``manifest``, if it is a valid manifest of this upload and these parts."""
    try:
        manifests.validate_manifest(manifest)
    except manifests.ManifestError as exc:
        raise Unprocessable(f"manifest: {exc}") from None
    assert isinstance(manifest, dict)  # validate_manifest accepts nothing else
    expected = {"upload": upload.id, "name": upload.name, "kind": upload.kind}
    for key, value in expected.items():
        if manifest[key] != value:
            raise Unprocessable(
                f"manifest: {key} is {manifest[key]!r} but the upload's is {value!r}"
            )
    c = manifest["ciphertext"]
    if c["size"] != total:
        raise Unprocessable(
            f"manifest: ciphertext.size is {c['size']} but the parts hold {total} bytes"
        )
    if c["part_size"] != upload.part_size:
        raise Unprocessable(
            f"manifest: ciphertext.part_size is {c['part_size']} but the upload's is {upload.part_size}"
        )
    if c["parts_sha256"] != parts_digest(parts):
        raise Unprocessable(
            "manifest: ciphertext.parts_sha256 does not match the SHA-256 of the stored parts' digests"
        )
    return manifest


def check_signature(
    session: Session, upload: Upload, manifest: dict[str, Any], signature: object
) -> tuple[str, str]:
    """``(signature, public key)``: the signature, if a key of the upload's org verifies it."""
    if not isinstance(signature, str):
        raise Unprocessable(
            "field 'signature' must be the base64 Ed25519 signature of the canonical manifest"
        )
    keys = session.scalars(
        select(SigningKey).where(SigningKey.org == upload.org, SigningKey.revoked_at.is_(None))
    ).all()
    if not keys:
        raise Unprocessable(
            f"organisation {upload.org} has no registered signing key: "
            "a lab principal registers one first"
        )
    for key in keys:
        try:
            manifests.verify_manifest(manifest, signature, key.public_key)
            return signature, key.public_key
        except manifests.SignatureError:
            continue
    raise Unprocessable(
        f"signature: the manifest's signature does not verify under "
        f"{'the signing key' if len(keys) == 1 else f'any of the {len(keys)} signing keys'} "
        f"{upload.org} has registered; sign the manifest with one of them, or "
        "register the key that signed it (PUT /v1/me/signing-key), then complete again"
    )


def check_header(upload: Upload, identity: age.Identity, total: int, max_header: int) -> int:
    """The size of the stored age header, if the upload's custody ``identity`` opens it."""
    if not upload.header_prefix:
        raise Unprocessable("age header: part 1 holds no data")
    try:
        header = age.read_header(io.BytesIO(upload.header_prefix), max_size=max_header)
    except age.AgeError as exc:
        raise Unprocessable(f"age header: the upload is not an age v1 file: {exc}") from None
    stanza_type = "X25519" if isinstance(identity, age.X25519Identity) else "mlkem768x25519"
    if not any(s.type == stanza_type for s in header.stanzas):
        raise Unprocessable(
            f"age header: no {stanza_type} stanza; encrypt to the upload's recipient {upload.recipient}"
        )
    try:
        age.unwrap_file_key(header, [identity])
    except age.NoIdentityMatchError:
        raise Unprocessable(
            f"age header: no stanza opens with the upload's key; encrypt to {upload.recipient}"
        ) from None
    except age.AgeError as exc:
        raise Unprocessable(f"age header: {exc}") from None
    header_size = len(header.raw)
    if total < header_size + _FIRST_CHUNK_OVERHEAD:
        raise Unprocessable("age payload: the file ends before its first payload chunk")
    return header_size
