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

import json
from pathlib import Path
from typing import Any

from gateway import manifest as manifests
from gateway.client.errors import ClientError, UntrustedManifest
from gateway.client.http import Api
from gateway.client.keys import fingerprint
from gateway.client.profiles import config_dir, write_private


def known_keys_path() -> Path:
    return config_dir() / "known_keys.json"


def load_known(path: Path) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise UntrustedManifest(f"{path}: unreadable known-keys file ({exc})") from None
    return data if isinstance(data, dict) else {}


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


def check_manifest(
    api: Api,
    org: str,
    manifest: dict[str, Any],
    signature: str,
    *,
    trust_new: bool = False,
    path: Path | None = None,
) -> str:
    """Verify the lab's signature under a pinned key (pinning on first use); the key used."""
    path = path or known_keys_path()
    known = load_known(path)
    pinned = known.get(api.url, {}).get(org, [])
    for key in pinned:
        if verifies(key, manifest, signature):
            return key
    items = api.get(f"/v1/orgs/{org}/signing-keys").get("items", [])
    listed = {str(item["public_key"]): item for item in items}
    signer = next((key for key in listed if verifies(key, manifest, signature)), None)
    if signer is None:
        raise UntrustedManifest(
            f"the manifest's signature does not verify under any signing key of {org}"
        )
    if pinned and not trust_new:
        who = listed[signer]
        raise UntrustedManifest(
            f"the manifest is signed by a key of {org} this machine has not seen before: "
            f"{signer} ({fingerprint(signer)}, registered by {who.get('principal')} "
            f"on {who.get('created_at')})",
            hint="check that key with the lab; if it is theirs, pass --trust-new-key",
        )
    new_pins = list(dict.fromkeys([*pinned, *(list(listed) if not pinned else [signer])]))
    known.setdefault(api.url, {})[org] = new_pins
    write_private(path, json.dumps(known, indent=1, sort_keys=True).encode())
    return signer


def known_recipients_path() -> Path:
    return config_dir() / "known_recipients.json"


def pin_recipient(
    gateway: str,
    grantee: str,
    recipient: str,
    *,
    trust_new: bool = False,
    label: str = "",
    path: Path | None = None,
) -> bool:
    """Pin the evaluator ``grantee``'s age recipient on first use; True if newly pinned.

    ``<config dir>/known_recipients.json`` maps a gateway URL and an evaluator's principal
    id to the recipient a lab-custody approval last wrapped a file key for. A different one
    later is refused unless ``trust_new`` (the evaluator changed its key, and the lab
    checked that out of band), because otherwise whoever controls the gateway could
    announce its own recipient in the evaluator's name and receive the key.
    """
    path = path or known_recipients_path()
    known = load_known(path)
    pinned = known.get(gateway, {}).get(grantee, [])
    if recipient in pinned[-1:]:
        return False
    who = label or grantee
    if pinned and not trust_new:
        raise ClientError(
            f"the gateway says {who}'s recipient is now {recipient}, not {pinned[-1]} as "
            "pinned on this machine: the file key is not wrapped for it",
            hint="check the new recipient with the evaluator; if it is theirs, "
            "pass --trust-new-recipient",
        )
    known.setdefault(gateway, {})[grantee] = [recipient]
    write_private(path, json.dumps(known, indent=1, sort_keys=True).encode())
    return True
