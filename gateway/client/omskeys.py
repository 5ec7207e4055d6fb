"""OpenSSF Model Signing keys on the client: register, list, revoke (a lab); fetch (a pull).

``gateway oms-key register FILE`` registers what a lab's ``model.sig`` files verify under:
an elliptic-curve public key, or the certificate chain (CA root and intermediates, PEM)
their signing certificates chain to; ``gateway oms-key revoke ID`` revokes it for good.
``gateway pull ART -o DIR`` fetches the material the artifact's lab registered, revoked
material too (:func:`registered`), and checks ``model.sig`` under it, unless ``--oms-key
FILE`` gives it (:func:`given`). Material is named by its fingerprint, the SHA-256 of its
DER (a key's SubjectPublicKeyInfo; a chain's certificates one after another), computed
here from the PEM: a gateway that names it otherwise is refused. The material in force
is pinned per gateway and organisation in ``<config dir>/known_oms_keys.json`` on first
use (:func:`pin`); material met later needs ``--trust-new-key``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from gateway.client import trust
from gateway.client.base import api_for, profile_option
from gateway.client.errors import ClientError, InvocationError, UntrustedManifest
from gateway.client.http import Api
from gateway.client.profiles import config_dir
from gateway.tree import oms
from gateway.tui import out, reported, say

REGISTERED = "the key the lab registered"
GIVEN = "the key given with --oms-key"
CHAIN = "certificate_chain"
CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class Key:
    """Material (a public key or a certificate chain, PEM) to check ``model.sig`` under,
    where it came from, its fingerprint, and when it was revoked (None: in force)."""

    pem: bytes
    fingerprint: str
    source: str
    revoked_at: str | None = None

    @property
    def chain(self) -> bool:
        return CERTIFICATE in self.pem

    def material(self) -> oms.Material:
        return oms.CertificateIdentity(self.pem) if self.chain else oms.PublicKey(self.pem)


def fingerprint(pem: bytes, where: str) -> str:
    """The SHA-256 (hex) of a PEM public key's DER, or of a certificate chain's DER one
    certificate after another; InvocationError names ``where`` if it is neither."""
    if CERTIFICATE in pem:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise InvocationError(f"{where} holds a certificate that is not readable") from None
        return hashlib.sha256(b"".join(c.public_bytes(Encoding.DER) for c in certs)).hexdigest()
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


def known_oms_path() -> Path:
    return config_dir() / "known_oms_keys.json"


def _key(item: dict[str, object], org: str, source: str) -> Key:
    """The material of one listed item, its fingerprint computed here from the PEM; a
    listed fingerprint that differs is refused (the gateway's word is not the key's)."""
    pem = str(item.get(CHAIN) or item.get("public_key") or "").encode()
    what = f"the OpenSSF model signing material {item.get('id')} of {org}"
    try:
        mine = fingerprint(pem, what)
    except InvocationError:
        raise UntrustedManifest(f"the gateway sent {what} in no readable PEM") from None
    if item.get("fingerprint") != mine:
        raise UntrustedManifest(
            f"the gateway says {what} has fingerprint {item.get('fingerprint')}, but its "
            f"PEM's is {mine}: refusing it"
        )
    revoked = item.get("revoked_at")
    return Key(pem, mine, source, None if revoked is None else str(revoked))


def registered(
    api: Api, org: str, *, trust_new: bool = False, path: Path | None = None
) -> list[Key]:
    """The OMS material ``org`` registered with the gateway, oldest first: in force, then
    revoked; material in force is pinned per gateway and org (:func:`pin`)."""
    org = trust.check_org(org)
    listed = api.get(f"/v1/orgs/{org}/oms-keys")
    items = [*(listed.get("items") or []), *(listed.get("revoked") or [])]
    keys = [_key(k, org, REGISTERED) for k in items if isinstance(k, dict)]
    pin(api.url, org, keys, trust_new=trust_new, path=path)
    return keys


def pin(
    gateway: str, org: str, keys: list[Key], *, trust_new: bool = False, path: Path | None = None
) -> None:
    """Pin ``org``'s OMS material in force on first use (saying so); later, refuse material
    in force not pinned here unless ``trust_new``, because otherwise whoever controls the
    gateway could register its own and sign a swapped directory's ``model.sig``."""
    path = path or known_oms_path()
    known = trust.load_known(path)
    pinned = list(known.get(gateway, {}).get(org, []))
    new = [k.fingerprint for k in keys if k.revoked_at is None and k.fingerprint not in pinned]
    if not new:
        return
    if pinned and not trust_new:
        raise UntrustedManifest(
            f"{org} has OpenSSF model signing material this machine has not seen before: "
            f"{', '.join(new)}",
            hint="check it with the lab; if it is theirs, pass --trust-new-key",
        )
    known.setdefault(gateway, {})[org] = [*pinned, *new]
    trust.save_known(path, known)
    said = "a new" if pinned else "first use of"
    say(
        f"note: {said} {org}'s OpenSSF model signing material at {gateway}: pinned {', '.join(new)}"
    )


@click.group("oms-key")
def group() -> None:
    """OpenSSF Model Signing keys that pull checks model.sig under."""


@group.command("register")
@click.argument("material", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@profile_option
@reported(ClientError)
def register(profile: str | None, material: Path) -> None:
    """Register MATERIAL, which your model.sig files verify under: an EC P-256 or P-384
    public key (PEM), or the certificate chain (the CA root and any intermediates, PEM)
    the certificates you sign with chain to.

    Evaluators' `gateway pull ART -o DIR` then checks a directory's OpenSSF model
    signature under what your organisation registered.
    """
    pem = material.read_bytes()
    fingerprint(pem, str(material))
    field = CHAIN if CERTIFICATE in pem else "public_key"
    api = api_for(profile)
    key = api.put("/v1/me/oms-key", {field: pem.decode("ascii", "replace")})
    what = "certificate chain" if field == CHAIN else f"key ({key['curve']})"
    say(
        f"registered OpenSSF model signing {what} {key['id']} {key['fingerprint']} "
        f"for {api.get('/v1/me').get('org')}"
    )


@group.command("list")
@profile_option
@reported(ClientError)
def list_keys(profile: str | None) -> None:
    """Your organisation's OpenSSF model signing material: id, kind, fingerprint, state."""
    api = api_for(profile)
    listed = api.get(f"/v1/orgs/{api.get('/v1/me').get('org')}/oms-keys")
    for k in [*(listed.get("items") or []), *(listed.get("revoked") or [])]:
        state = f"revoked {k['revoked_at']}" if k.get("revoked_at") else "in force"
        out(f"{k['id']}  {k['kind']}  {k['fingerprint']}  {state}")


@group.command("revoke")
@click.argument("key_id", metavar="ID")
@profile_option
@reported(ClientError)
def revoke(profile: str | None, key_id: str) -> None:
    """Revoke your organisation's OpenSSF model signing material ID for good.

    A pull then refuses a model.sig made under it, saying it was revoked.
    """
    api = api_for(profile)
    api.delete(f"/v1/me/oms-key/{key_id}")
    say(f"revoked OpenSSF model signing material {key_id}")


COMMANDS: list[click.Command] = [group]
