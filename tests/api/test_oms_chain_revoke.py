"""OpenSSF Model Signing chains: canonical material, per-certificate revocation, signer identity."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from flask.testing import FlaskClient

from tests.api.test_oms_keys import ec_public
from tests.api.test_oms_revoke import _cert, listed
from tests.conftest import Principals
from tests.services.conftest import entries


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def chain(
    client: FlaskClient, principals: Principals, text: str, identity: str | None = None
) -> Any:
    body: dict[str, Any] = {"certificate_chain": text}
    if identity is not None:
        body["identity"] = identity
    return client.put("/v1/me/oms-key", json=body, headers=principals.auth("lab"))


def revoke(client: FlaskClient, principals: Principals, key_id: str) -> None:
    r = client.delete(f"/v1/me/oms-key/{key_id}", headers=principals.auth("lab"))
    assert r.status_code == 204, r.get_json()


def _ca() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """A root and two intermediates it issued."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("lab-a root", root_key, None, ca=True)
    i1, i2 = (
        _cert(
            f"lab-a ca {n}",
            ec.generate_private_key(ec.SECP256R1()),
            (root.subject, root_key),
            ca=True,
        )
        for n in (1, 2)
    )
    return root, i1, i2


def test_the_same_certificates_reordered_or_repeated_are_the_same_material(
    client: FlaskClient, principals: Principals
) -> None:
    root, i1, _ = _ca()
    first = chain(client, principals, pem(i1, root)).get_json()
    for again in (pem(root, i1), pem(root, i1, root, i1), pem(i1, i1, root)):
        r = chain(client, principals, again)
        assert r.status_code == 200 and r.get_json()["id"] == first["id"], r.get_json()
    assert len(listed(client, principals)["items"]) == 1
    assert len(entries(client, principals, action="identity.oms_key.register")) == 1
    revoke(client, principals, first["id"])
    for again in (pem(root, i1), pem(root, root, i1)):
        r = chain(client, principals, again)
        assert r.status_code == 409 and "stays revoked" in r.get_json()["detail"], r.get_json()
    assert listed(client, principals)["items"] == []


def test_a_revoked_chain_revokes_the_certificates_no_chain_in_force_holds(
    client: FlaskClient, principals: Principals
) -> None:
    root, i1, i2 = _ca()
    old = chain(client, principals, pem(i1, root)).get_json()
    new = chain(client, principals, pem(i2, root)).get_json()
    revoke(client, principals, old["id"])
    # i1 is revoked for good, in any company; the root, still held by a chain in force, is not.
    r = chain(client, principals, pem(i1, i2, root))
    assert r.status_code == 409, r.get_json()
    assert "lab-a ca 1" in r.get_json()["detail"] and old["id"] in r.get_json()["detail"]
    assert chain(client, principals, pem(root)).status_code == 200
    # once no chain in force holds the root, it is revoked too
    for item in listed(client, principals)["items"]:
        revoke(client, principals, item["id"])
    assert new["id"] not in [k["id"] for k in listed(client, principals)["items"]]
    _, other_i1, _ = _ca()
    r = chain(client, principals, pem(root, other_i1))
    assert r.status_code == 409 and "lab-a root" in r.get_json()["detail"], r.get_json()


def test_a_chain_registers_with_a_signer_identity_logged_and_fixed(
    client: FlaskClient, principals: Principals
) -> None:
    root, _, _ = _ca()
    r = chain(client, principals, pem(root), "signer@lab-a.example")
    assert r.status_code == 200 and r.get_json()["identity"] == "signer@lab-a.example"
    assert [k["identity"] for k in listed(client, principals)["items"]] == ["signer@lab-a.example"]
    logged = entries(client, principals, action="identity.oms_key.register")
    assert [e["details"]["identity"] for e in logged] == ["signer@lab-a.example"]
    again = chain(client, principals, pem(root), "someone@else.example")
    assert again.status_code == 409 and "signer@lab-a.example" in again.get_json()["detail"]
    assert chain(client, principals, pem(root)).status_code == 409  # nor dropped
    assert chain(client, principals, pem(root), "signer@lab-a.example").status_code == 200
    revoke(client, principals, r.get_json()["id"])
    logged = entries(client, principals, action="identity.oms_key.revoke")
    assert [e["details"]["identity"] for e in logged] == ["signer@lab-a.example"]


def test_a_bad_identity_is_refused_and_nothing_is_stored(
    client: FlaskClient, principals: Principals
) -> None:
    root, _, _ = _ca()
    key, _ = ec_public(ec.SECP256R1())
    h = principals.auth("lab")
    r = client.put("/v1/me/oms-key", json={"public_key": key, "identity": "x@y"}, headers=h)
    assert r.status_code == 400 and "public key has none" in r.get_json()["detail"]
    for bad in ("", " lead@x", "a\nb", "x" * 256, 7):
        r = chain(client, principals, pem(root), bad)  # type: ignore[arg-type]
        assert r.status_code == 400 and r.mimetype == "application/problem+json", r.get_json()
    assert listed(client, principals)["items"] == []


def _patched(oid: bytes) -> str:
    """A self-issued CA certificate whose key usage extension is relabelled ``oid``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "lab-a root")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(Encoding.DER)
    key_usage = bytes.fromhex("0603551d0f")
    assert der.count(key_usage) == 1
    body = base64.encodebytes(der.replace(key_usage, oid)).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def test_a_certificate_whose_fields_do_not_parse_is_refused_and_nothing_is_stored(
    client: FlaskClient, principals: Principals
) -> None:
    root, i1, _ = _ca()
    duplicate = _patched(bytes.fromhex("0603551d13"))  # a second basic constraints
    malformed = _patched(bytes.fromhex("0603551d11"))  # a bit string read as names
    for bad in (duplicate, malformed, pem(i1, root) + malformed):
        r = chain(client, principals, bad)
        assert r.status_code == 400 and r.mimetype == "application/problem+json", r.get_data()
        assert "is not readable" in r.get_json()["detail"], r.get_json()
    assert listed(client, principals)["items"] == []
