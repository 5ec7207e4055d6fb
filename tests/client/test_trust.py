"""Lab keys pinned on first use: a key that appears later needs the evaluator's say-so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway import manifest as manifests
from gateway.client.trust import UntrustedManifest, check_manifest

MANIFEST = {
    "version": 1,
    "upload": "up_1",
    "name": "w",
    "kind": "weights",
    "ciphertext": {"size": 300, "part_size": 8 << 20, "parts_sha256": "a" * 64},
    "plaintext": {"size": 100, "sha256": "b" * 64},
}


class FakeApi:
    url = "http://gw"

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/orgs/lab-a/signing-keys"
        return {
            "items": [{"public_key": k, "principal": "alice", "created_at": "x"} for k in self.keys]
        }


def test_first_use_pins_then_a_new_key_is_refused(tmp_path: Path) -> None:
    known = tmp_path / "known_keys.json"
    first, second = manifests.generate_signing_key(), manifests.generate_signing_key()
    pub1, pub2 = manifests.public_key_b64(first), manifests.public_key_b64(second)
    sig1, sig2 = manifests.sign(MANIFEST, first), manifests.sign(MANIFEST, second)
    assert (
        check_manifest(FakeApi([pub1]), "lab-a", MANIFEST, sig1, path=known) == pub1
    )  # pinned now
    # the gateway now lists a second key (a rotation, or a gateway that lies) and it signed
    with pytest.raises(UntrustedManifest, match="has not seen before"):
        check_manifest(FakeApi([pub1, pub2]), "lab-a", MANIFEST, sig2, path=known)
    assert (
        check_manifest(FakeApi([pub1, pub2]), "lab-a", MANIFEST, sig2, trust_new=True, path=known)
        == pub2
    )
    assert (
        check_manifest(FakeApi([]), "lab-a", MANIFEST, sig2, path=known) == pub2
    )  # pinned: no need to list


def test_a_signature_under_no_key_is_refused(tmp_path: Path) -> None:
    key = manifests.generate_signing_key()
    other = manifests.generate_signing_key()
    with pytest.raises(UntrustedManifest, match="does not verify"):
        check_manifest(
            FakeApi([manifests.public_key_b64(key)]),
            "lab-a",
            MANIFEST,
            manifests.sign(MANIFEST, other),
            path=tmp_path / "k.json",
        )
    changed = {**MANIFEST, "plaintext": {"size": 101, "sha256": "b" * 64}}
    with pytest.raises(UntrustedManifest):
        check_manifest(
            FakeApi([manifests.public_key_b64(key)]),
            "lab-a",
            changed,
            manifests.sign(MANIFEST, key),
            path=tmp_path / "k.json",
        )


def test_the_new_key_message_shows_the_key_to_check_with_the_lab(tmp_path: Path) -> None:
    from gateway.client.keys import fingerprint

    known = tmp_path / "known_keys.json"
    first, second = manifests.generate_signing_key(), manifests.generate_signing_key()
    pub1, pub2 = manifests.public_key_b64(first), manifests.public_key_b64(second)
    check_manifest(FakeApi([pub1]), "lab-a", MANIFEST, manifests.sign(MANIFEST, first), path=known)
    with pytest.raises(UntrustedManifest) as info:
        check_manifest(
            FakeApi([pub1, pub2]), "lab-a", MANIFEST, manifests.sign(MANIFEST, second), path=known
        )
    assert info.value.detail.endswith(
        f"not seen before: {pub2} ({fingerprint(pub2)}, registered by alice on x)"
    )
    assert info.value.hint == "check that key with the lab; if it is theirs, pass --trust-new-key"
