"""Which lab keys this machine trusts: pinned on first use, in a known-keys file.

``<config dir>/known_keys.json`` maps a gateway URL and an organisation to the
Ed25519 public keys (base64) the client has accepted for it. The first time a pull
meets an organisation, the keys the gateway lists for it (``GET /v1/orgs/{org}/
signing-keys``) are pinned. Later, a manifest must verify under a pinned key: a key
that appeared since is accepted only with ``--trust-new-key`` (the lab rotated its
key, and the evaluator checked that out of band), because otherwise whoever controls
the gateway could register a key and sign a swapped artifact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import manifest as manifests
from gateway.client.errors import ClientError, UntrustedManifest
from gateway.client.http import Api
from gateway.client.keys import fingerprint
from gateway.client.profiles import config_dir, write_private
from gateway.clock import rfc3339
from gateway.orgname import is_name
from gateway.tui import say

REVOKED = "revoked"
"""The known-keys file's record of revoked keys: ``{"revoked": {gateway: {org: {key: when}}}}``;
never a gateway URL, so it cannot clash with the pins."""


def known_keys_path() -> Path:
    return config_dir() / "known_keys.json"


def load_known(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise UntrustedManifest(f"{path}: unreadable known-keys file ({exc})") from None
    return data if isinstance(data, dict) else {}


def save_known(path: Path, known: dict[str, Any]) -> None:
    write_private(path, json.dumps(known, indent=1, sort_keys=True).encode())


def check_org(org: object) -> str:
    """``org`` if it is an organisation name the gateway could have made; else UntrustedManifest.

    Checked before any key is pinned or printed under it: a look-alike (``demo\u2011lab``,
    ``demo-lab ``) is a name no gateway makes, so it can only be a gateway that lies.
    """
    if not is_name(org):
        raise UntrustedManifest(
            f"the gateway names the artifact's organisation {ascii(org)}, which is not an "
            "organisation name: nothing is trusted under it"
        )
    assert isinstance(org, str)
    return org


def verifies(public_key: str, manifest: dict[str, Any], signature: str) -> bool:
    try:
        manifests.verify_manifest(manifest, signature, public_key)
    except (manifests.SignatureError, manifests.ManifestError):
        return False
    return True


BOUND_FIELDS = ("upload", "name", "kind")
"""What a manifest must say the same as the artifact asked for: its upload, name and kind."""


def check_binding(info: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Refuse a manifest that is not the artifact's: another upload, name or kind.

    The signature proves the lab signed *a* manifest; this proves it is the one of the
    artifact the gateway says it serves, so a gateway cannot pass off another (older,
    withdrawn) artifact of the same lab, with that artifact's genuine manifest, as this one.
    """
    for field in BOUND_FIELDS:
        if manifest.get(field) != info.get(field):
            raise UntrustedManifest(
                f"the lab's signed manifest is for {field} {manifest.get(field)!r}, but artifact "
                f"{info.get('id')} is {field} {info.get(field)!r}: not this artifact's manifest"
            )


def _listed(listing: dict[str, Any], field: str) -> dict[str, dict[str, Any]]:
    items = listing.get(field)
    return {
        str(item["public_key"]): item
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and isinstance(item.get("public_key"), str)
    }


def _revocations(known: dict[str, Any], gateway: str, org: str) -> dict[str, str]:
    """The keys of ``org`` this machine saw revoked (or no longer listed): key to when."""
    by_org = known.setdefault(REVOKED, {}).setdefault(gateway, {})
    found = by_org.setdefault(org, {})
    if not isinstance(found, dict):
        raise UntrustedManifest(f"the known-keys file's revocations of {org} are unreadable")
    return found


def check_shape(manifest: dict[str, Any]) -> None:
    """Refuse a signed manifest of the wrong shape (a size that is no integer, say) before
    any of its fields is used: a lab can sign anything."""
    try:
        manifests.validate_manifest(manifest)
    except manifests.ManifestError as exc:
        raise UntrustedManifest(f"the lab's signed manifest is malformed: {exc}") from None


def check_manifest(
    api: Api,
    org: str,
    manifest: dict[str, Any],
    signature: str,
    *,
    trust_new: bool = False,
    path: Path | None = None,
) -> str:
    """Verify the lab's signature under a key pinned here and still in force; the key used.

    The org's keys are fetched every time: a pinned key the gateway lists as revoked, or no
    longer lists at all, is recorded as revoked here and refused, now and later (a gateway
    can hide a revocation this way, never add a key). On first use of an org every key it
    lists is pinned, and said so with the signer's fingerprint.
    """
    org = check_org(org)
    path = path or known_keys_path()
    known = load_known(path)
    pinned: list[str] = [str(k) for k in known.get(api.url, {}).get(org, [])]
    revoked = _revocations(known, api.url, org)
    before = dict(revoked)
    listing = api.get(f"/v1/orgs/{org}/signing-keys")
    listed = _listed(listing, "items")
    for key, item in _listed(listing, "revoked").items():
        revoked.setdefault(key, str(item.get("revoked_at") or "at a time not given"))
    candidates = dict.fromkeys([*pinned, *listed, *revoked])
    signer = next((k for k in candidates if verifies(k, manifest, signature)), None)
    if signer is not None and signer in pinned and signer not in listed and signer not in revoked:
        revoked[signer] = f"before {rfc3339(datetime.now(UTC))} (no longer listed)"
    if revoked != before:
        save_known(path, known)
    if signer is None:
        raise UntrustedManifest(
            f"the manifest's signature does not verify under any signing key of {org}"
        )
    if signer in revoked:
        raise UntrustedManifest(
            f"the manifest is signed by {fingerprint(signer)} of {org}, revoked "
            f"{revoked[signer]}: that key is no longer in force",
            hint="ask the lab to sign the artifact again with a key in force",
        )
    if signer in pinned:
        return signer
    who = listed[signer]
    if (pinned or before) and not trust_new:
        raise UntrustedManifest(
            f"the manifest is signed by a key of {org} this machine has not seen before: "
            f"{signer} ({fingerprint(signer)}, registered by {who.get('principal')} "
            f"on {who.get('created_at')})",
            hint="check that key with the lab; if it is theirs, pass --trust-new-key",
        )
    first = not pinned and not before
    fresh = [k for k in (list(listed) if first else [signer]) if k not in revoked]
    known.setdefault(api.url, {})[org] = list(dict.fromkeys([*pinned, *fresh]))
    save_known(path, known)
    more = f" (and {len(fresh) - 1} more it lists)" if len(fresh) > 1 else ""
    said = "first use of" if first else "a new key of"
    say(
        f"note: {said} {org} at {api.url}: pinned its signing key {fingerprint(signer)}{more}, "
        f"registered by {who.get('principal')} on {who.get('created_at')}"
    )
    return signer


def known_recipients_path() -> Path:
    return config_dir() / "known_recipients.json"


NAMES = "names"
"""The known-recipients file's record of evaluators by the name a lab sees them under:
``{"names": {gateway: {org: {name: {"principal": id, "recipient": r}}}}}``; never a gateway
URL, so it cannot clash with the pins by id."""


@dataclass(frozen=True)
class Evaluator:
    """The evaluator a lab-custody approval wraps a file key for, as the gateway names it."""

    gateway: str
    principal: str
    org: str
    name: str
    recipient: str

    def label(self) -> str:
        return f"{self.name} of {self.org} ({self.principal})"


def evaluator(gateway: str, material: dict[str, Any]) -> Evaluator:
    """The grantee of a request's custody material; refused unless its names are names.

    A look-alike organisation or evaluator name (``agency\u2011a``) is one no gateway makes,
    so it can only be a gateway that lies, and nothing is pinned under it.
    """
    org = check_org(material.get("org"))
    name, principal, recipient = (material.get(k) for k in ("grantee_name", "grantee", "recipient"))
    if not is_name(name) or not isinstance(principal, str) or not isinstance(recipient, str):
        raise ClientError(
            f"the gateway names the request's evaluator {ascii(name)} ({ascii(principal)}) "
            f"of {org}, with recipient {ascii(recipient)}: not an evaluator the file key can "
            "be wrapped for"
        )
    assert isinstance(name, str)
    return Evaluator(gateway, principal, org, name, recipient)


def _by_name(known: dict[str, Any], who: Evaluator) -> dict[str, Any]:
    """The pins by name of ``who``'s organisation at ``who``'s gateway (created empty)."""
    found = known.setdefault(NAMES, {}).setdefault(who.gateway, {}).setdefault(who.org, {})
    if not isinstance(found, dict):
        raise ClientError(f"the known-recipients file's names of {who.org} are unreadable")
    return found


def check_recipient(who: Evaluator, *, trust_new: bool = False, path: Path | None = None) -> bool:
    """Refuse an evaluator whose pins disagree with what the gateway says; True on first use.

    ``<config dir>/known_recipients.json`` pins, per gateway, an evaluator's principal id
    to the recipient an approval last wrapped a file key for, and the evaluator's
    (organisation, name) to that id and recipient. A known id with another recipient, a
    known name with another id or recipient, or a known id under another name is refused
    unless ``trust_new`` (the evaluator changed its key, and the lab checked that out of
    band): otherwise whoever controls the gateway could show a request from a fresh id in
    the evaluator's name, with its own recipient, and receive the key. First use (neither
    pinned) is True: the caller has the lab confirm it before anything is wrapped.

    Nothing is written, but for a pin by id alone (made before pins by name existed) that
    agrees: the (organisation, name) the gateway shows now is pinned to it, and said so, so
    that from now on a fresh id under that name is refused. Otherwise :func:`pin_recipient`
    pins once the approval succeeded.
    """
    known = load_known(path or known_recipients_path())
    by_id = known.get(who.gateway, {}).get(who.principal, [])
    names = _by_name(known, who)
    pinned = names.get(who.name)
    elsewhere = [
        f"{name} of {org}"
        for org, of_org in known.get(NAMES, {}).get(who.gateway, {}).items()
        for name, pin in (of_org.items() if isinstance(of_org, dict) else [])
        if isinstance(pin, dict)
        and pin.get("principal") == who.principal
        and (org, name) != (who.org, who.name)
    ]
    if by_id and by_id[-1] != who.recipient:
        problem = f"not {by_id[-1]} as pinned for {who.principal}"
    elif isinstance(pinned, dict) and pinned.get("principal") != who.principal:
        problem = f"but {who.name} of {who.org} is pinned as {pinned.get('principal')}"
    elif isinstance(pinned, dict) and pinned.get("recipient") != who.recipient:
        problem = f"not {pinned.get('recipient')} as pinned for {who.name} of {who.org}"
    elif elsewhere:
        problem = f"but {who.principal} is pinned as {elsewhere[0]}"
    elif by_id and pinned is None:
        _upgrade(known, who, path or known_recipients_path())
        return False
    else:
        return not by_id and pinned is None
    if not trust_new:
        raise ClientError(
            f"the gateway says {who.label()} has recipient {who.recipient}, {problem} on this "
            "machine: the file key is not wrapped for it",
            hint="check the evaluator and its recipient with them; if they are theirs, "
            "pass --trust-new-recipient",
        )
    return False


def _upgrade(known: dict[str, Any], who: Evaluator, path: Path) -> None:
    """Say that ``who``, pinned by id alone, is pinned under its (organisation, name) too
    once this approval succeeds (:func:`pin_recipient` writes it then, never before: a
    name shown by a gateway for an approval that fails pins nothing)."""
    say(
        f"note: {who.principal} is pinned on this machine by id alone: once approved, it is "
        f"pinned under the name the gateway gives it now, {who.name} of {who.org}"
    )


def pin_recipient(who: Evaluator, *, path: Path | None = None) -> None:
    """Pin ``who``'s recipient under its id and its (organisation, name), replacing any
    earlier pin of either: called once an approval wrapped the file key for it."""
    path = path or known_recipients_path()
    known = load_known(path)
    for of_org in known.get(NAMES, {}).get(who.gateway, {}).values():
        if isinstance(of_org, dict):
            for name in [n for n, p in of_org.items() if _pins(p, who.principal)]:
                del of_org[name]
    known.setdefault(who.gateway, {})[who.principal] = [who.recipient]
    _by_name(known, who)[who.name] = {"principal": who.principal, "recipient": who.recipient}
    save_known(path, known)


def _pins(pin: object, principal: str) -> bool:
    return isinstance(pin, dict) and pin.get("principal") == principal


def lab_headers_path() -> Path:
    return config_dir() / "lab_headers.json"


def record_lab_header(
    gateway: str, artifact: str, header: bytes, *, path: Path | None = None
) -> str:
    """Remember the header this machine pushed for a lab-custody ``artifact``; its SHA-256.

    ``<config dir>/lab_headers.json`` maps a gateway URL and an artifact id to the SHA-256
    of the age header pushed for it, which :func:`check_lab_header` holds approvals to.
    """
    path = path or lab_headers_path()
    digest = hashlib.sha256(header).hexdigest()
    known = load_known(path)
    known.setdefault(gateway, {})[artifact] = digest
    save_known(path, known)
    return digest


def check_lab_header(
    gateway: str,
    artifact: str,
    header: bytes,
    *,
    expected: str | None = None,
    path: Path | None = None,
) -> None:
    """Refuse to wrap a file key from a header other than the one pushed for ``artifact``.

    The header the gateway serves for an approval is only as honest as the gateway: one
    that served another artifact's header would have the lab hand that artifact's key to
    the evaluator. It must be the one recorded when this machine pushed ``artifact``, or
    the SHA-256 the lab gives (``expected``, from the machine that pushed it).
    """
    digest = hashlib.sha256(header).hexdigest()
    recorded = expected or load_known(path or lab_headers_path()).get(gateway, {}).get(artifact)
    if recorded is None:
        raise ClientError(
            f"this machine did not push artifact {artifact}, so the header the gateway serves "
            "for it cannot be checked against the one pushed",
            hint="give the SHA-256 `gateway push` printed for it: --header-sha256 HEX",
        )
    if not hmac.compare_digest(recorded, digest):
        raise ClientError(
            f"the gateway served a header for artifact {artifact} (SHA-256 {digest}) that is "
            f"not the one pushed for it ({recorded}): the file key is not wrapped"
        )
