"""The signer identity of a chain: matched with a subject alternative name of its own kind,
with the common name only when the certificate has none, and pinned with the chain."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.client import omskeys, trust
from gateway.client.errors import UntrustedManifest
from gateway.tree import oms
from gateway.tree.errors import OmsError
from tests.client.test_oms_pins import FakeApi


def _leaf(cn: str, *names: x509.GeneralName) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256())


def _matches(cert: x509.Certificate, identity: str) -> bool:
    try:
        oms._check_certificate_identity((cert,), identity)
    except OmsError:
        return False
    return True


@pytest.mark.parametrize(
    ("cert", "identity"),
    [
        (_leaf("signer", x509.RFC822Name("ml@lab.example")), "ml@lab.example"),
        (
            _leaf("signer", x509.UniformResourceIdentifier("https://lab.example/ml")),
            "https://lab.example/ml",
        ),
        (_leaf("signer", x509.DNSName("signer.lab.example")), "signer.lab.example"),
        (_leaf("ml@lab.example"), "ml@lab.example"),  # no SAN extension: the CN
        (_leaf("signer.lab.example"), "signer.lab.example"),
    ],
)
def test_an_identity_matches_a_name_of_its_kind(cert: x509.Certificate, identity: str) -> None:
    assert _matches(cert, identity)


@pytest.mark.parametrize(
    ("cert", "identity"),
    [
        # a CN the user chose is not the identity once the certificate has SANs
        (_leaf("ml@lab.example", x509.RFC822Name("eve@lab.example")), "ml@lab.example"),
        (_leaf("signer.lab.example", x509.DNSName("www.lab.example")), "signer.lab.example"),
        # a SAN of another kind spelled like the identity is not it
        (_leaf("signer", x509.DNSName("ml@lab.example")), "ml@lab.example"),
        (_leaf("signer", x509.UniformResourceIdentifier("ml@lab.example")), "ml@lab.example"),
        (_leaf("signer", x509.RFC822Name("https://lab.example/ml")), "https://lab.example/ml"),
        (_leaf("signer", x509.RFC822Name("signer.lab.example")), "signer.lab.example"),
    ],
)
def test_an_identity_is_not_matched_by_the_cn_beside_sans_or_by_a_name_of_another_kind(
    cert: x509.Certificate, identity: str
) -> None:
    assert not _matches(cert, identity)


def _chain_item(identity: str | None) -> tuple[dict[str, object], str]:
    root = _leaf("lab-a root")
    pem = root.public_bytes(Encoding.PEM).decode()
    fp = omskeys.fingerprint(pem.encode(), "t")
    item = {"id": "oms_1", "certificate_chain": pem, "fingerprint": fp, "identity": identity}
    return item, fp


@pytest.mark.parametrize(("before", "after"), [(None, "ml@lab.example"), ("ml@lab.example", None)])
def test_an_identity_that_appears_or_disappears_on_a_pinned_chain_needs_consent(
    tmp_path: Path, before: str | None, after: str | None
) -> None:
    known = tmp_path / "known_oms_keys.json"
    item, fp = _chain_item(before)
    omskeys.registered(FakeApi([item]), "lab-a", path=known)  # type: ignore[arg-type]
    changed = FakeApi([{**item, "identity": after}])
    with pytest.raises(UntrustedManifest, match="has not seen before"):
        omskeys.registered(changed, "lab-a", path=known)  # type: ignore[arg-type]
    omskeys.registered(changed, "lab-a", trust_new=True, path=known)  # type: ignore[arg-type]
    # the identity consented to replaces the one pinned before: going back needs consent too
    pinned = trust.load_known(known)["http://gw"]["lab-a"]
    assert pinned == [fp + (f" for {after}" if after else "")]
    with pytest.raises(UntrustedManifest, match="has not seen before"):
        omskeys.registered(FakeApi([item]), "lab-a", path=known)  # type: ignore[arg-type]
