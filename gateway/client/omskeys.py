"""OpenSSF Model Signing keys on the client: register one (a lab), fetch a lab's (a pull).

``gateway oms-key register PUB.pem`` registers the elliptic-curve public key a lab's
``model.sig`` files verify under; ``gateway pull ART -o DIR`` fetches the keys the
artifact's lab registered (:func:`registered`) and checks ``model.sig`` under them, unless
``--oms-key PUB`` gives the key (:func:`given`). A key is named by its fingerprint, the
SHA-256 of its DER (SubjectPublicKeyInfo), as the gateway names it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from gateway.client.base import api_for, profile_option
from gateway.client.errors import ClientError, InvocationError
from gateway.client.http import Api
from gateway.tui import reported, say

REGISTERED = "the key the lab registered"
GIVEN = "the key given with --oms-key"


@dataclass(frozen=True)
class Key:
    """A public key (PEM) to check ``model.sig`` under, where it came from, its fingerprint."""

    pem: bytes
    fingerprint: str
    source: str


def fingerprint(pem: bytes, where: str) -> str:
    """The SHA-256 (hex) of a PEM public key's DER; InvocationError names ``where`` if not one."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise InvocationError(
            f"{where} is not a PEM public key", hint="give the public half (PUBLIC KEY) in PEM"
        ) from None
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()


def given(path: Path) -> Key:
    """The key of ``--oms-key PUB``: it overrides what the lab registered."""
    pem = path.read_bytes()
    return Key(pem, fingerprint(pem, str(path)), GIVEN)


def registered(api: Api, org: str) -> list[Key]:
    """The OMS keys ``org`` registered with the gateway, oldest first."""
    items = api.get(f"/v1/orgs/{org}/oms-keys").get("items") or []
    return [Key(str(k["public_key"]).encode(), str(k["fingerprint"]), REGISTERED) for k in items]


@click.group("oms-key")
def group() -> None:
    """OpenSSF Model Signing keys that pull checks model.sig under."""


@group.command("register")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@profile_option
@reported(ClientError)
def register(profile: str | None, public_key: Path) -> None:
    """Register PUBLIC_KEY (PEM, EC P-256 or P-384), which your model.sig files verify under.

    Evaluators' `gateway pull ART -o DIR` then checks a directory's OpenSSF model
    signature under the keys your organisation registered.
    """
    pem = public_key.read_bytes()
    fingerprint(pem, str(public_key))
    api = api_for(profile)
    key = api.put("/v1/me/oms-key", {"public_key": pem.decode("ascii", "replace")})
    say(
        f"registered OpenSSF model signing key {key['fingerprint']} ({key['curve']}) "
        f"for {api.get('/v1/me').get('org')}"
    )


COMMANDS: list[click.Command] = [group]
