"""A revoked certificate stays revoked however its key is certified again: re-issued with a
new serial, or the very certificate with its ECDSA signature re-encoded as ``(r, n - s)``."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from flask.testing import FlaskClient

from gateway.tree import oms
from tests.api.test_oms_chain_revoke import chain, pem, revoke
from tests.api.test_oms_revoke import listed
from tests.conftest import Principals

#: the order of the P-256 group (SEC 2, 2.4.2)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def issue(
    subject: str,
    key: ec.EllipticCurvePublicKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def _der(tag: int, body: bytes) -> bytes:
    """A DER TLV (definite length; short or long form)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def reencoded(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` with its ECDSA signature ``(r, s)`` replaced by the equally valid
    ``(r, n - s)``: the same certificate to a verifier, another DER and fingerprint.

    A certificate is SEQUENCE { tbsCertificate, signatureAlgorithm, BIT STRING }; the
    new signature is most often a byte longer or shorter, so the outer DER is rebuilt."""
    der, tbs, sig = cert.public_bytes(Encoding.DER), cert.tbs_certificate_bytes, cert.signature
    r, s = decode_dss_signature(sig)
    other = encode_dss_signature(r, P256_ORDER - s)
    start = der.index(tbs)
    tail = _der(0x03, b"\x00" + sig)
    assert der.endswith(tail)
    algorithm = der[start + len(tbs) : len(der) - len(tail)]
    body = tbs + algorithm + _der(0x03, b"\x00" + other)
    return x509.load_der_x509_certificate(_der(0x30, body))


def rotated() -> tuple[
    x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate
]:
    """A root, its key, and two intermediates it issued."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = issue("lab-a root", root_key.public_key(), None, root_key)
    i2 = issue(
        "lab-a ca 2", ec.generate_private_key(ec.SECP256R1()).public_key(), root.subject, root_key
    )
    i1 = issue(
        "lab-a ca 1", ec.generate_private_key(ec.SECP256R1()).public_key(), root.subject, root_key
    )
    return root, root_key, i1, i2


def test_a_revoked_intermediate_certified_again_or_re_encoded_is_refused(
    client: FlaskClient, principals: Principals
) -> None:
    root, root_key, i1, i2 = rotated()
    old = chain(client, principals, pem(i1, root)).get_json()
    assert chain(client, principals, pem(i2, root)).status_code == 200
    revoke(client, principals, old["id"])
    again = issue("lab-a ca 1", i1.public_key(), root.subject, root_key)  # type: ignore[arg-type]
    copy = reencoded(i1)
    for twin in (again, copy):
        twin.verify_directly_issued_by(root)  # a valid certificate, issued by the root
        assert oms.certificate_fingerprint(twin) != oms.certificate_fingerprint(i1)
        assert oms.key_fingerprint(twin) == oms.key_fingerprint(i1)
        r = chain(client, principals, pem(twin, i2, root))
        assert r.status_code == 409, r.get_json()
        detail = r.get_json()["detail"]
        assert oms.key_fingerprint(i1) in detail and old["id"] in detail, detail
    # the key under another name is the same key
    renamed = issue("lab-a signing ca", i1.public_key(), root.subject, root_key)  # type: ignore[arg-type]
    assert chain(client, principals, pem(renamed, root)).status_code == 409
    assert len(listed(client, principals)["items"]) == 1
    # a key no revoked certificate has still registers
    fresh = issue(
        "lab-a ca 3", ec.generate_private_key(ec.SECP256R1()).public_key(), root.subject, root_key
    )
    assert chain(client, principals, pem(fresh, root)).status_code == 200


def test_a_revoked_root_re_issued_with_its_key_is_refused_once_no_chain_in_force_holds_it(
    client: FlaskClient, principals: Principals
) -> None:
    root, root_key, i1, _ = rotated()
    old = chain(client, principals, pem(i1, root)).get_json()
    revoke(client, principals, old["id"])
    root_again = issue("lab-a root", root_key.public_key(), None, root_key)
    r = chain(client, principals, pem(root_again))
    assert r.status_code == 409 and "public key" in r.get_json()["detail"], r.get_json()
