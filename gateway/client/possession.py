"""Proof of possession of a signing key: the statement a new key signs when it is registered.

Design note. A lab registers an Ed25519 manifest-signing key with ``PUT /v1/me/signing-key``
``{"public_key", "proof"}``. ``proof`` is the key's own Ed25519 signature (base64) over the
canonical JSON (:func:`gateway.canonical.canonical_json`) of

    {"type": "gateway-signing-key-registration/v1",
     "org": <the registering principal's org>, "principal": <its name>,
     "public_key": <the key, base64>}

so only the holder of the private key can register it, only for that org and principal: a
signature copied from one registration proves nothing for another org. A replay for the same
org and principal registers nothing new (a key is registered once, and once revoked never
again). The gateway checks it with :func:`verify`; the client makes it with :func:`prove`.
This module imports nothing of the server, so both use it.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING

from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError
from nacl.signing import SigningKey, VerifyKey

from gateway.canonical import canonical_json

if TYPE_CHECKING:
    from gateway.client.http import Api

STATEMENT_TYPE = "gateway-signing-key-registration/v1"


def statement(org: str, principal: str, public_key: str) -> bytes:
    """The bytes a new key signs to register itself for ``principal`` of ``org``."""
    return canonical_json(
        {"type": STATEMENT_TYPE, "org": org, "principal": principal, "public_key": public_key}
    )


def prove(key: SigningKey, org: str, principal: str) -> dict[str, str]:
    """The body of ``PUT /v1/me/signing-key`` registering ``key``: its public half and proof."""
    public = base64.b64encode(bytes(key.verify_key)).decode()
    signature = key.sign(statement(org, principal, public)).signature
    return {"public_key": public, "proof": base64.b64encode(signature).decode()}


def verify(org: str, principal: str, public_key: str, proof: str) -> bool:
    """Whether ``proof`` is the signature of ``public_key`` over the statement for ``org``/``principal``."""
    try:
        verify_key = VerifyKey(base64.b64decode(public_key, validate=True))
        signature = base64.b64decode(proof, validate=True)
        verify_key.verify(statement(org, principal, public_key), signature)
    except (BadSignatureError, NaclValueError, binascii.Error, ValueError, TypeError):
        return False
    return True


def register(api: Api, key_file: Path) -> str:
    """Register the key in ``key_file`` for the caller, with its proof; its public key."""
    from gateway.client.keys import load_signing_key

    key = load_signing_key(key_file)
    me = api.get("/v1/me")
    body = prove(key, str(me.get("org")), str(me.get("name")))
    api.put("/v1/me/signing-key", body)
    return body["public_key"]
