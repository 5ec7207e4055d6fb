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

    def __init__(self, keys: list[str], revoked: list[str] | None = None) -> None:
        self.keys, self.revoked = keys, revoked or []

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/orgs/lab-a/signing-keys"
        made = {"principal": "alice", "created_at": "x"}
        return {
            "items": [{"public_key": k, **made} for k in self.keys],
            "revoked": [{"public_key": k, **made, "revoked_at": "y"} for k in self.revoked],
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
    assert check_manifest(FakeApi([pub1, pub2]), "lab-a", MANIFEST, sig2, path=known) == pub2


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


def _pair() -> tuple[str, str]:
    key = manifests.generate_signing_key()
    return manifests.public_key_b64(key), manifests.sign(MANIFEST, key)


@pytest.mark.parametrize(
    "org", ["lab\u2011a", "lab-a ", "lab-a\n", "Lab-a", "", "-lab", "x" * 65, None, ["lab-a"]]
)
def test_an_org_name_the_gateway_could_not_have_made_is_refused_before_anything_is_pinned(
    tmp_path: Path, org: Any
) -> None:
    from gateway.client.trust import check_org

    pub, sig = _pair()
    known = tmp_path / "known_keys.json"
    with pytest.raises(UntrustedManifest, match="which is not an organisation name") as info:
        check_manifest(FakeApi([pub]), org, MANIFEST, sig, path=known)
    assert "\n" not in info.value.detail and ascii(org) in info.value.detail
    assert not known.exists()
    assert check_org("lab-a") == "lab-a"


def test_first_use_says_the_org_and_the_fingerprint_computed_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.client.keys import fingerprint

    pub, sig = _pair()
    known = tmp_path / "known_keys.json"
    check_manifest(FakeApi([pub]), "lab-a", MANIFEST, sig, path=known)
    err = capsys.readouterr().err
    assert err == (
        f"gateway: note: first use of lab-a at http://gw: pinned its signing key "
        f"{fingerprint(pub)}, registered by alice on x\n"
    )
    check_manifest(FakeApi([pub]), "lab-a", MANIFEST, sig, path=known)
    assert capsys.readouterr().err == "", "only the first use is said"


@pytest.mark.parametrize("how", ["listed revoked", "no longer listed"])
def test_a_pinned_key_the_gateway_revoked_is_refused_and_never_accepted_again(
    tmp_path: Path, how: str
) -> None:
    from gateway.client.keys import fingerprint

    pub, sig = _pair()
    known = tmp_path / "known_keys.json"
    assert check_manifest(FakeApi([pub]), "lab-a", MANIFEST, sig, path=known) == pub
    gone = FakeApi([], [pub]) if how == "listed revoked" else FakeApi([])
    with pytest.raises(UntrustedManifest, match="no longer in force") as info:
        check_manifest(gone, "lab-a", MANIFEST, sig, path=known)
    assert fingerprint(pub) in info.value.detail
    assert ("revoked y" if how == "listed revoked" else "no longer listed") in info.value.detail
    # the gateway lists it again (a hostile one, or a mistake): the revocation holds
    for again in (False, True):
        with pytest.raises(UntrustedManifest, match="no longer in force"):
            check_manifest(FakeApi([pub]), "lab-a", MANIFEST, sig, trust_new=again, path=known)


def test_a_revoked_key_is_not_pinned_on_first_use(tmp_path: Path) -> None:
    pub, sig = _pair()
    with pytest.raises(UntrustedManifest, match="revoked y: that key is no longer in force"):
        check_manifest(FakeApi([], [pub]), "lab-a", MANIFEST, sig, path=tmp_path / "k.json")
