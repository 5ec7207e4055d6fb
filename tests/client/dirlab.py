"""A lab (or a gateway) that makes its archive by hand: any tar, any signed file list.

It uploads through the gateway's real API, with the client's own encryption and part
sending, a plaintext the tests build with :mod:`tarfile`, under a version 2 directory
manifest whose ``files`` the test chooses, signed with the lab's registered key.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from gateway import manifest as manifests
from gateway.client import agehdr, keys
from gateway.client.http import Api
from gateway.client.parts import PartSender, Sealed, ciphertext, send_parts
from gateway.client.push import expected_size
from gateway.client.sealing import Payload
from tests.harness import ORGS, LocalGateway

Claim = tuple[str, bytes]  # a file the manifest lists: path, and the content it commits to


def tar_of(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **fields: object
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def upload_by_hand(
    gw: LocalGateway, signing_key: Path, name: str, plaintext: bytes, claims: list[Claim]
) -> str:
    """Upload ``plaintext`` as a directory artifact listing ``claims``; the artifact id."""
    api = Api(gw.url, gw.tokens["lab"])
    probe = agehdr.new_header(os.urandom(16), [agehdr.throwaway_recipient()])
    upload = api.post(
        "/v1/uploads",
        {
            "name": name,
            "kind": "weights",
            "share_with": [ORGS["evaluator"][0]],
            "size": expected_size(len(probe), len(plaintext)),
        },
    )
    file_key, nonce = os.urandom(16), os.urandom(16)
    header = agehdr.new_header(file_key, [upload["recipient"]])
    pieces = ciphertext(
        io.BytesIO(plaintext), Payload(file_key, nonce), header + nonce, len(plaintext), Sealed()
    )
    sender = PartSender(api, upload["id"], {}, lambda n: None)
    digests = send_parts(pieces, int(upload["part_size"]), sender, 1)
    commit = manifests.file_commit(file_key)
    files = []
    for path, data in claims:
        hasher = commit(path)
        hasher.update(data)
        files.append({"path": path, "size": len(data), "commitment": hasher.hexdigest()})
    manifest = {
        "version": 2,
        "upload": upload["id"],
        "name": name,
        "kind": "weights",
        "ciphertext": {
            "size": expected_size(len(header), len(plaintext)),
            "part_size": int(upload["part_size"]),
            "parts_sha256": hashlib.sha256(b"".join(digests)).hexdigest(),
        },
        "plaintext": {
            "size": len(plaintext),
            "archive": manifests.archive_hasher(file_key).hexdigest(),
            "files": files,
        },
    }
    sign, _ = keys.load_signing(signing_key)
    artifact = api.post(
        f"/v1/uploads/{upload['id']}/complete", {"manifest": manifest, "signature": sign(manifest)}
    )
    return str(artifact["id"])
