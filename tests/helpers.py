"""Helpers the API and end-to-end tests share: age files, parts, signed manifests."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from nacl.signing import SigningKey

from gateway import age
from gateway import manifest as manifests
from gateway.client import possession
from gateway.models import Artifact
from gateway.runtime import Runtime

MIB = 1 << 20


def age_file(recipient: str, plaintext: bytes) -> bytes:
    out = io.BytesIO()
    age.encrypt(io.BytesIO(plaintext), out, [age.parse_recipient(recipient)])
    return out.getvalue()


def split(data: bytes, part_size: int) -> list[bytes]:
    return [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(upload: dict[str, Any], data: bytes, plaintext: bytes) -> dict[str, Any]:
    digests = b"".join(hashlib.sha256(p).digest() for p in split(data, upload["part_size"]))
    return {
        "version": 1,
        "upload": upload["id"],
        "name": upload["name"],
        "kind": upload["kind"],
        "ciphertext": {
            "size": len(data),
            "part_size": upload["part_size"],
            "parts_sha256": hashlib.sha256(digests).hexdigest(),
        },
        "plaintext": {"size": len(plaintext), "sha256": sha(plaintext)},
    }


def sign(m: dict[str, Any], key: SigningKey) -> str:
    return manifests.sign(m, key)


def public_b64(key: SigningKey) -> str:
    return manifests.public_key_b64(key)


def key_registration(key: SigningKey, me: dict[str, Any]) -> dict[str, str]:
    """The body of ``PUT /v1/me/signing-key`` for ``key``, with its proof, as ``me`` (``/v1/me``)."""
    return possession.prove(key, me["org"], me["name"])


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Incompressible test data, repeatable for a seed."""
    out = bytearray()
    block = hashlib.sha256(f"seed-{seed}".encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def object_key(rt: Runtime, artifact_id: str) -> str:
    """Where the store keeps an artifact's ciphertext, as the gateway recorded it."""
    with rt.db.session() as session:
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None
        return artifact.object_key
