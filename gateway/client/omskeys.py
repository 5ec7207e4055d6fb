"""OpenSSF Model Signing keys on the client: register, list, revoke (a lab); fetch (a pull).

``gateway oms-key register FILE`` registers what a lab's ``model.sig`` files verify under:
an elliptic-curve public key, or the certificate chain (CA root and intermediates, PEM)
their signing certificates chain to; ``gateway oms-key revoke ID`` revokes it for good.
``gateway pull ART -o DIR`` fetches the material the artifact's lab registered, revoked
material too (:func:`registered`), and checks ``model.sig`` under it, unless ``--oms-key
FILE`` gives it (:func:`given`). Material is named by its fingerprint, the SHA-256 of its
DER (a key's SubjectPublicKeyInfo; a chain's certificates in canonical form, each once and
ordered by its own SHA-256, one after another), computed here from the PEM: a gateway
that names it otherwise is refused. The material in force is pinned per gateway and
organisation in ``<config dir>/known_oms_keys.json`` on first use (:func:`pin`), a chain
with the signer identity it was listed with; material met later needs ``--trust-new-key``.
Material seen revoked is recorded there too (:func:`remember`), once the listing passed
the pins, and refused from then on, whatever the gateway lists later, as is a chain that
holds one of its certificates that no pinned chain in force holds (computed each time,
from the pins of the moment); it stays among the revoked material a pull checks
``model.sig`` against.
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
SEEN = "material this machine saw revoked"
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
    identity: str | None = None  #: the name a chain's signing certificate must carry
    id: str = ""  #: the gateway's id for it

    @property
    def chain(self) -> bool:
        return CERTIFICATE in self.pem

    @property
    def certificates(self) -> dict[str, x509.Certificate]:
        """A chain's certificates by fingerprint (none for a key)."""
        if not self.chain:
            return {}
        return {oms.certificate_fingerprint(c): c for c in oms.chain_certificates(self.pem)}

    @property
    def public_keys(self) -> dict[str, str]:
        """A chain's certificates' public-key fingerprints
        (:func:`gateway.tree.oms.key_fingerprint`) to the certificate's fingerprint."""
        found = ((oms.key_fingerprint(c), fp) for fp, c in self.certificates.items())
        return {kfp: fp for kfp, fp in sorted(found, key=lambda p: p[1]) if kfp is not None}

    @property
    def pin_name(self) -> str:
        """What is pinned: the fingerprint, and for a chain the identity it binds."""
        return self.fingerprint + (f" for {self.identity}" if self.identity else "")

    def material(self) -> oms.Material:
        if self.chain:
            return oms.CertificateIdentity(self.pem, self.identity)
        return oms.PublicKey(self.pem)


def fingerprint(pem: bytes, where: str) -> str:
    """The SHA-256 (hex) of a PEM public key's DER, or of a certificate chain's canonical
    DER (:func:`gateway.tree.oms.chain_certificates`); InvocationError names ``where`` if
    it is neither."""
    if CERTIFICATE in pem:
        try:
            certs = oms.chain_certificates(pem)
        except ValueError:
            raise InvocationError(f"{where} holds a certificate that is not readable") from None
        return oms.chain_fingerprint(certs)
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
    revoked, identity = item.get("revoked_at"), item.get("identity")
    if identity is not None and not (isinstance(identity, str) and CERTIFICATE in pem):
        raise UntrustedManifest(f"the gateway sent {what} with an identity that is no name")
    when = None if revoked is None else str(revoked)
    return Key(pem, mine, source, when, identity, str(item.get("id")))


def listed(api: Api, org: str) -> list[Key]:
    """``org``'s OMS material as the gateway lists it, oldest first: in force, then revoked."""
    org = trust.check_org(org)
    listing = api.get(f"/v1/orgs/{org}/oms-keys")
    items = [*(listing.get("items") or []), *(listing.get("revoked") or [])]
    return [_key(k, org, REGISTERED) for k in items if isinstance(k, dict)]


def held(gateway: str, org: str, keys: list[Key], *, path: Path) -> set[str]:
    """The certificates of the chains in force among ``keys`` that are pinned here (on
    first use, when none is, of every chain in force, as :func:`pin` takes them all), and
    their public keys' fingerprints: the only ones that keep a certificate of revoked
    material, or its key, from counting as revoked."""
    pinned = set(trust.load_known(path).get(gateway, {}).get(org, []))
    mine = [k for k in keys if k.revoked_at is None and (not pinned or k.pin_name in pinned)]
    return {fp for k in mine for fp in [*k.certificates, *k.public_keys]}


def registered(
    api: Api, org: str, *, trust_new: bool = False, path: Path | None = None
) -> list[Key]:
    """The OMS material ``org`` registered with the gateway (:func:`listed`), then the
    material this machine saw revoked that the gateway no longer lists. Material in force
    that this machine saw revoked is refused (:func:`seen_revoked`); the rest in force is
    pinned per gateway and org (:func:`pin`), and only then is the revoked material
    recorded (:func:`remember`)."""
    path = path or known_oms_path()
    keys = listed(api, org)
    seen = _seen(trust.load_known(path), api.url, org)
    kept = held(api.url, org, keys, path=path)
    listed_revoked = {k.fingerprint: _record(k) for k in keys if k.revoked_at is not None}
    for key in keys:
        said = (
            seen_revoked(key, {**listed_revoked, **seen}, kept) if key.revoked_at is None else None
        )
        if said is not None:
            raise UntrustedManifest(f"{org}'s OpenSSF model signing material {said}: refusing it")
    pin(api.url, org, keys, trust_new=trust_new, path=path)
    remember(api.url, org, keys, path=path)
    seen = _seen(trust.load_known(path), api.url, org)
    shown = {k.fingerprint for k in keys}
    return keys + [_remembered(fp, r) for fp, r in seen.items() if fp not in shown]


def _seen(known: dict[str, object], gateway: str, org: str) -> dict[str, dict[str, object]]:
    """The record of ``org``'s material seen revoked at ``gateway``: fingerprint to its
    ``revoked_at`` and ``pem``."""
    by_gateway = known.setdefault(trust.REVOKED, {})
    found = by_gateway.setdefault(gateway, {}).setdefault(org, {})  # type: ignore[attr-defined]
    if not isinstance(found, dict) or not all(isinstance(r, dict) for r in found.values()):
        raise UntrustedManifest(f"the known OMS keys file's revocations of {org} are unreadable")
    return found


def remember(gateway: str, org: str, keys: list[Key], *, path: Path) -> None:
    """Record the revoked material among ``keys`` for good, with its PEM: which of its
    certificates count as revoked is decided when it is checked (:func:`seen_revoked`)."""
    known = trust.load_known(path)
    seen = _seen(known, gateway, org)
    new = [k for k in keys if k.revoked_at is not None and k.fingerprint not in seen]
    for key in new:
        seen[key.fingerprint] = _record(key)
    if new:
        trust.save_known(path, known)


def _record(key: Key) -> dict[str, object]:
    return {"revoked_at": key.revoked_at, "pem": key.pem.decode("ascii")}


def seen_revoked(
    key: Key, seen: dict[str, dict[str, object]], kept: set[str] | None = None
) -> str | None:
    """What makes ``key`` material this machine saw revoked (None: nothing): it, or a
    certificate of it revoked with other material, one that no pinned chain in force
    holds (``kept``, :func:`held`), or a certificate with the public key of one (a key
    no pinned chain in force has: the key certified again, or the certificate re-encoded,
    is still revoked)."""
    if key.fingerprint in seen:
        return f"{key.fingerprint} was seen revoked here ({seen[key.fingerprint]['revoked_at']})"
    kept = kept or set()
    for fp, record in seen.items():
        old = _remembered(fp, record)
        when = f"seen revoked here with {fp} ({record['revoked_at']})"
        revoked = set(old.certificates) - kept
        hit = next((c for c in sorted(key.certificates) if c in revoked), None)
        if hit is not None:
            return f"{key.fingerprint} holds certificate {hit}, {when}"
        keys = set(old.public_keys) - kept
        same = next(((k, c) for k, c in key.public_keys.items() if k in keys), None)
        if same is not None:
            return f"{key.fingerprint} holds certificate {same[1]}, whose public key {same[0]} was {when}"
    return None


def _remembered(fp: str, record: dict[str, object]) -> Key:
    pem = str(record.get("pem", "")).encode()
    try:
        mine = fingerprint(pem, "a revocation recorded here")
    except InvocationError:
        mine = None
    if mine != fp:
        raise UntrustedManifest(f"the known OMS keys file's record of {fp} is unreadable")
    return Key(pem, fp, SEEN, str(record.get("revoked_at")))


def pin(
    gateway: str, org: str, keys: list[Key], *, trust_new: bool = False, path: Path | None = None
) -> None:
    """Pin ``org``'s OMS material in force on first use (saying so); later, refuse material
    in force not pinned here unless ``trust_new``, because otherwise whoever controls the
    gateway could register its own and sign a swapped directory's ``model.sig``.

    A chain is pinned with its identity (:attr:`Key.pin_name`): the same chain listed with
    an identity it was not pinned with, or without the one it was, is new material too,
    and the pin consented to replaces the chain's earlier one."""
    path = path or known_oms_path()
    known = trust.load_known(path)
    pinned = list(known.get(gateway, {}).get(org, []))
    new = [k.pin_name for k in keys if k.revoked_at is None and k.pin_name not in pinned]
    if not new:
        return
    if pinned and not trust_new:
        raise UntrustedManifest(
            f"{org} has OpenSSF model signing material this machine has not seen before: "
            f"{', '.join(new)}",
            hint="check it with the lab; if it is theirs, pass --trust-new-key",
        )
    # A chain's identity is fixed at registration, so only one pin per fingerprint can be
    # true: the one consented to replaces the others, and a gateway going back to the
    # old identity (or to none) is new material again.
    renewed = {name.split(" ", 1)[0] for name in new}
    kept = [name for name in pinned if name.split(" ", 1)[0] not in renewed]
    known.setdefault(gateway, {})[org] = [*kept, *new]
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
@click.option(
    "--identity",
    metavar="ID",
    help="With a chain: the name the signing certificate must carry, as a subject "
    "alternative name of its kind (a URI, holding ':'; an e-mail address, holding '@'; "
    "else a DNS name), or as its common name only if it has no SANs. Without it, any "
    "certificate the CA issued for signing signs as your organisation.",
)
@profile_option
@reported(ClientError)
def register(profile: str | None, material: Path, identity: str | None) -> None:
    """Register MATERIAL, which your model.sig files verify under: an EC P-256 or P-384
    public key (PEM), or the certificate chain (the CA root and any intermediates, PEM)
    the certificates you sign with chain to.

    Evaluators' `gateway pull ART -o DIR` then checks a directory's OpenSSF model
    signature under what your organisation registered.
    """
    pem = material.read_bytes()
    fingerprint(pem, str(material))
    field = CHAIN if CERTIFICATE in pem else "public_key"
    if identity is not None and field != CHAIN:
        raise InvocationError(
            "--identity binds a certificate chain's signer: a public key has none"
        )
    body = {field: pem.decode("ascii", "replace")}
    api = api_for(profile)
    key = api.put("/v1/me/oms-key", body if identity is None else {**body, "identity": identity})
    what = "certificate chain" if field == CHAIN else f"key ({key['curve']})"
    bound = f" for signer {key['identity']}" if key.get("identity") else ""
    say(
        f"registered OpenSSF model signing {what} {key['id']} {key['fingerprint']}{bound} "
        f"for {api.get('/v1/me').get('org')}"
    )


@group.command("list")
@profile_option
@reported(ClientError)
def list_keys(profile: str | None) -> None:
    """Your organisation's OpenSSF model signing material: id, kind, fingerprint, state.

    Material listed as revoked is recorded on this machine and refused from then on.
    """
    api = api_for(profile)
    org = str(api.get("/v1/me").get("org"))
    keys = listed(api, org)
    remember(api.url, org, keys, path=known_oms_path())
    seen = _seen(trust.load_known(known_oms_path()), api.url, org)
    kept = held(api.url, org, keys, path=known_oms_path())
    for key in keys:
        said = seen_revoked(key, seen, kept) if key.revoked_at is None else None
        state = f"revoked {key.revoked_at}" if key.revoked_at else "in force"
        if said is not None:
            state = "refused here: " + said.removeprefix(key.fingerprint + " ")
        bound = f"  for {key.identity}" if key.identity else ""
        kind = CHAIN if key.chain else "public_key"
        out(f"{key.id}  {kind}  {key.fingerprint}  {state}{bound}")


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
