"""OpenSSF model signing material: its fingerprint computed here, pinned per gateway and org."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.client import omskeys, trust
from gateway.client.errors import UntrustedManifest


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _item(pem: str, fingerprint: str | None = None, revoked: str | None = None) -> dict[str, Any]:
    mine = omskeys.fingerprint(pem.encode(), "test")
    return {
        "id": "oms_" + mine[:8],
        "kind": "public_key",
        "public_key": pem,
        "fingerprint": fingerprint or mine,
        "revoked_at": revoked,
    }


class FakeApi:
    url = "http://gw"

    def __init__(
        self, items: list[dict[str, Any]], revoked: list[dict[str, Any]] | None = None
    ) -> None:
        self.items, self.revoked = items, revoked or []

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        assert path == "/v1/orgs/lab-a/oms-keys"
        return {"items": self.items, "revoked": self.revoked}


def test_a_fingerprint_the_gateway_claims_for_another_key_is_refused(tmp_path: Path) -> None:
    """A gateway that serves its own key under the genuine key's fingerprint is caught:
    the fingerprint shown is always the one of the PEM that is used."""
    genuine, attacker = _pem(), _pem()
    lie = _item(attacker, fingerprint=omskeys.fingerprint(genuine.encode(), "test"))
    with pytest.raises(UntrustedManifest, match="but its PEM's is"):
        omskeys.registered(FakeApi([lie]), "lab-a", path=tmp_path / "k.json")  # type: ignore[arg-type]
    assert not (tmp_path / "k.json").exists()
    with pytest.raises(UntrustedManifest, match="in no readable PEM"):
        omskeys.registered(FakeApi([{**lie, "public_key": "x"}]), "lab-a", path=tmp_path / "k.json")  # type: ignore[arg-type]


def test_material_is_pinned_on_first_use_and_new_material_needs_consent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known_oms_keys.json"
    first, second = _pem(), _pem()
    keys = omskeys.registered(FakeApi([_item(first)]), "lab-a", path=known)  # type: ignore[arg-type]
    fp1 = omskeys.fingerprint(first.encode(), "test")
    assert [k.fingerprint for k in keys] == [fp1]
    assert capsys.readouterr().err == (
        f"gateway: note: first use of lab-a's OpenSSF model signing material at http://gw: "
        f"pinned {fp1}\n"
    )
    both = FakeApi([_item(first), _item(second)])
    with pytest.raises(UntrustedManifest, match="has not seen before") as info:
        omskeys.registered(both, "lab-a", path=known)  # type: ignore[arg-type]
    assert info.value.hint and "--trust-new-key" in info.value.hint
    omskeys.registered(both, "lab-a", trust_new=True, path=known)  # type: ignore[arg-type]
    assert len(omskeys.registered(both, "lab-a", path=known)) == 2  # type: ignore[arg-type]
    # material the lab revoked is listed as revoked and needs no consent
    third = _item(_pem(), revoked="2026-01-01T00:00:00Z")
    listed = omskeys.registered(FakeApi([_item(first)], [third]), "lab-a", path=known)  # type: ignore[arg-type]
    assert [k.revoked_at for k in listed] == [None, "2026-01-01T00:00:00Z"]


def test_a_look_alike_org_is_refused_before_its_material_is_fetched(tmp_path: Path) -> None:
    with pytest.raises(UntrustedManifest, match="not an organisation name"):
        omskeys.registered(FakeApi([]), "lab\u2011a", path=tmp_path / "k.json")  # type: ignore[arg-type]


def _chain() -> str:
    from tests.api.test_oms_chain_revoke import _ca, pem

    root, i1, _ = _ca()
    return pem(i1, root)


def _chain_item(text: str, revoked: str | None = None) -> dict[str, Any]:
    mine = omskeys.fingerprint(text.encode(), "test")
    return {
        "id": "oms_" + mine[:8],
        "kind": "certificate_chain",
        "certificate_chain": text,
        "fingerprint": mine,
        "revoked_at": revoked,
    }


def test_material_seen_revoked_is_refused_for_good(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway that lists material in force again after this machine saw it revoked is
    refused; the record of it survives the gateway no longer listing it at all."""
    known = tmp_path / "known_oms_keys.json"
    key, chain = _item(_pem()), _chain_item(_chain())
    omskeys.registered(FakeApi([key, chain]), "lab-a", path=known)  # type: ignore[arg-type]
    when = "2026-01-01T00:00:00Z"
    gone = FakeApi([key], [{**chain, "revoked_at": when}])
    assert [k.revoked_at for k in omskeys.registered(gone, "lab-a", path=known)] == [None, when]  # type: ignore[arg-type]
    with pytest.raises(UntrustedManifest, match="seen revoked here") as info:
        omskeys.registered(FakeApi([key, chain]), "lab-a", path=known)  # type: ignore[arg-type]
    assert chain["fingerprint"] in info.value.detail
    # The gateway drops it: this machine still knows it was revoked, and checks against it.
    kept = omskeys.registered(FakeApi([key]), "lab-a", path=known)  # type: ignore[arg-type]
    assert [(k.fingerprint, k.source, k.revoked_at) for k in kept] == [
        (key["fingerprint"], omskeys.REGISTERED, None),
        (chain["fingerprint"], omskeys.SEEN, when),
    ]


def test_a_chain_holding_a_certificate_seen_revoked_is_refused(tmp_path: Path) -> None:
    from tests.api.test_oms_chain_revoke import _ca, pem

    known = tmp_path / "known_oms_keys.json"
    root, i1, i2 = _ca()
    other_root, _, _ = _ca()
    # [i1, root] revoked while [i2, root] is in force: i1 is revoked, the root is not
    old, new = (
        _chain_item(pem(i1, root), revoked="2026-01-01T00:00:00Z"),
        _chain_item(pem(i2, root)),
    )
    omskeys.registered(FakeApi([new], [old]), "lab-a", path=known)  # type: ignore[arg-type]
    assert omskeys.registered(
        FakeApi([new, _chain_item(pem(root))]), "lab-a", trust_new=True, path=known
    )  # type: ignore[arg-type]
    # new material, but it holds i1
    revived = _chain_item(pem(i1, other_root))
    with pytest.raises(UntrustedManifest, match="holds certificate .* seen revoked here"):
        omskeys.registered(FakeApi([new, revived]), "lab-a", trust_new=True, path=known)  # type: ignore[arg-type]


def test_a_revoked_certificate_stays_revoked_whatever_chains_the_gateway_lists_beside_it(
    tmp_path: Path,
) -> None:
    """Which certificates of revoked material count as revoked is decided from the chains
    pinned here, never from a chain the gateway lists in force that this machine refuses,
    and never from a record made earlier."""
    import json

    from tests.api.test_oms_chain_revoke import _ca, pem

    known = tmp_path / "known_oms_keys.json"
    root, i1, i2 = _ca()
    extra, _, _ = _ca()
    when = "2026-01-01T00:00:00Z"
    c1, c2 = _chain_item(pem(i1, root)), _chain_item(pem(i2, root))
    omskeys.registered(FakeApi([c1, c2]), "lab-a", path=known)  # type: ignore[arg-type]
    injected = _chain_item(pem(i1, root, extra))
    with pytest.raises(UntrustedManifest, match="seen revoked here|not seen before"):
        omskeys.registered(
            FakeApi([c2, injected], [{**c1, "revoked_at": when}]), "lab-a", path=known
        )  # type: ignore[arg-type]
    revived = _chain_item(pem(i1, extra))
    with pytest.raises(UntrustedManifest, match="holds certificate .* seen revoked here"):
        omskeys.registered(
            FakeApi([c2, revived], [{**c1, "revoked_at": when}]),  # type: ignore[arg-type]
            "lab-a",
            trust_new=True,
            path=known,
        )
    # a record that names none of its certificates (as one computed against the injected
    # chain would) still revokes them: they are taken from its PEM, not from the record
    data = json.loads(known.read_text())
    data[trust.REVOKED] = {
        "http://gw": {
            "lab-a": {
                c1["fingerprint"]: {
                    "revoked_at": when,
                    "pem": c1["certificate_chain"],
                    "certificates": [],
                }
            }
        }
    }
    known.write_text(json.dumps(data))
    with pytest.raises(UntrustedManifest, match="holds certificate .* seen revoked here"):
        omskeys.registered(FakeApi([c2, revived]), "lab-a", trust_new=True, path=known)  # type: ignore[arg-type]
