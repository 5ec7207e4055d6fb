"""The client's revocations match a revoked certificate's public key too: at pull, and in
its memory of what it saw revoked."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.client import dirpull, omskeys
from gateway.client.errors import PullError, UntrustedManifest
from gateway.tree import oms
from tests.api.test_oms_revoked_keys import issue, reencoded, rotated


def _key(*certs: x509.Certificate, revoked: str | None = None) -> omskeys.Key:
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in certs)
    return omskeys.Key(pem, omskeys.fingerprint(pem, "t"), omskeys.REGISTERED, revoked)


def _twins(
    root: x509.Certificate, root_key: ec.EllipticCurvePrivateKey, i1: x509.Certificate
) -> list[x509.Certificate]:
    """``i1``'s key certified again by the root: same name, another name, re-encoded."""
    key = i1.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return [
        issue("lab-a ca 1", key, root.subject, root_key),
        issue("lab-a signing ca", key, root.subject, root_key),
        reencoded(i1),
    ]


def test_a_bundle_carrying_a_revoked_key_certified_again_is_refused_at_pull(
    tmp_path: Path,
) -> None:
    root, root_key, i1, i2 = rotated()
    keys = [_key(i2, root), _key(i1, root, revoked="2026-01-01T00:00:00Z")]
    signer = ec.generate_private_key(ec.SECP256R1()).public_key()
    for twin in _twins(root, root_key, i1):
        leaf = issue("signer", signer, twin.subject, ec.generate_private_key(ec.SECP256R1()))
        signature = oms.Signature(b"", None, (leaf, twin, root))
        with pytest.raises(PullError, match="revoked key " + keys[1].fingerprint):
            dirpull._refuse_revoked(tmp_path, signature, keys)
    # a bundle of the intermediate in force is not refused
    leaf = issue("signer", signer, i2.subject, ec.generate_private_key(ec.SECP256R1()))
    dirpull._refuse_revoked(tmp_path, oms.Signature(b"", None, (leaf, i2, root)), keys)


def test_a_key_a_pinned_chain_in_force_holds_is_not_revoked_by_its_other_certificate(
    tmp_path: Path,
) -> None:
    root, root_key, i1, i2 = rotated()
    again = _twins(root, root_key, i1)[0]
    keys = [_key(again, root), _key(i1, root, revoked="2026-01-01T00:00:00Z")]
    leaf = issue(
        "signer", ec.generate_private_key(ec.SECP256R1()).public_key(), again.subject, root_key
    )
    dirpull._refuse_revoked(tmp_path, oms.Signature(b"", None, (leaf, again, root)), keys)


def test_a_chain_holding_a_key_seen_revoked_is_refused_by_the_client(tmp_path: Path) -> None:
    root, root_key, i1, i2 = rotated()
    old = _key(i1, root, revoked="2026-01-01T00:00:00Z")
    seen = {old.fingerprint: omskeys._record(old)}
    kept = {*_key(i2, root).certificates, *_key(i2, root).public_keys}
    for twin in _twins(root, root_key, i1):
        said = omskeys.seen_revoked(_key(twin, root), seen, kept)
        assert said is not None and "public key" in said and old.fingerprint in said, said
    assert omskeys.seen_revoked(_key(i2, root), seen, kept) is None
    # the root, held by the pinned chain in force, is not revoked by its key either
    assert omskeys.seen_revoked(_key(root), seen, kept) is None


def test_the_gateway_listing_a_re_encoded_revoked_certificate_in_force_is_refused(
    tmp_path: Path,
) -> None:
    from tests.client.test_oms_pins import FakeApi

    root, root_key, i1, i2 = rotated()
    known = tmp_path / "known_oms_keys.json"

    def item(key: omskeys.Key) -> dict[str, object]:
        return {
            "id": "oms_" + key.fingerprint[:8],
            "certificate_chain": key.pem.decode(),
            "fingerprint": key.fingerprint,
            "revoked_at": key.revoked_at,
        }

    first = [item(_key(i1, root)), item(_key(i2, root))]
    omskeys.registered(FakeApi(first), "lab-a", path=known)  # type: ignore[arg-type]
    revoked = [item(_key(i1, root, revoked="2026-01-01T00:00:00Z"))]
    omskeys.registered(FakeApi([first[1]], revoked), "lab-a", path=known)  # type: ignore[arg-type]
    copy = item(_key(reencoded(i1), root))
    with pytest.raises(UntrustedManifest, match="whose public key"):
        omskeys.registered(FakeApi([first[1], copy]), "lab-a", trust_new=True, path=known)  # type: ignore[arg-type]
