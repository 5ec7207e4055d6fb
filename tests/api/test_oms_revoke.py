"""OpenSSF Model Signing material: a lab revokes it (logged), registers a certificate chain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient

from tests.api.test_oms_keys import ec_public, put
from tests.conftest import Principals
from tests.services.conftest import entries


def listed(client: FlaskClient, principals: Principals) -> Any:
    return client.get("/v1/orgs/lab-a/oms-keys", headers=principals.auth("eval")).get_json()


def test_a_revoked_key_is_listed_apart_logged_and_stays_revoked(
    client: FlaskClient, principals: Principals
) -> None:
    pem, fingerprint = ec_public(ec.SECP256R1())
    key = put(client, principals, pem).get_json()
    assert key["kind"] == "public_key" and key["revoked_at"] is None
    url = f"/v1/me/oms-key/{key['id']}"
    # Only its own org's lab revokes it; a foreign or unknown id answers alike.
    assert client.delete(url, headers=principals.auth("lab_b")).status_code == 404
    assert client.delete(url, headers=principals.auth("eval")).status_code == 403
    nowhere = client.delete("/v1/me/oms-key/oms_nope", headers=principals.auth("lab"))
    assert nowhere.status_code == 404 and nowhere.mimetype == "application/problem+json"
    assert listed(client, principals)["revoked"] == []
    assert client.delete(url, headers=principals.auth("lab")).status_code == 204
    got = listed(client, principals)
    assert got["items"] == [] and [k["fingerprint"] for k in got["revoked"]] == [fingerprint]
    assert got["revoked"][0]["revoked_at"] is not None
    logged = entries(client, principals, action="identity.oms_key.revoke")
    assert [(e["org"], e["details"]["key"], e["details"]["new"]) for e in logged] == [
        ("lab-a", key["id"], "revoked")
    ]
    again = client.delete(url, headers=principals.auth("lab"))
    assert again.status_code == 409
    assert (
        put(client, principals, pem).status_code == 409
    )  # registering it again does not revive it
    assert listed(client, principals)["items"] == []


def _cert(subject: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (name, key) if issuer is None else issuer
    issuer_name = (
        issuer_name
        if isinstance(issuer_name, x509.Name)
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)])
    )
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def test_a_certificate_chain_registers_and_a_signing_certificate_is_refused(
    client: FlaskClient, principals: Principals
) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("lab-a root", root_key, None, ca=True)
    leaf = _cert(
        "lab-a signer", ec.generate_private_key(ec.SECP256R1()), ("lab-a root", root_key), ca=False
    )
    chain = root.public_bytes(Encoding.PEM).decode()
    h = principals.auth("lab")
    r = client.put("/v1/me/oms-key", json={"certificate_chain": chain}, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["kind"] == "certificate_chain" and r.get_json()["curve"] is None
    assert [k["certificate_chain"] for k in listed(client, principals)["items"]] == [chain]
    logged = entries(client, principals, action="identity.oms_key.register")
    assert [e["details"]["kind"] for e in logged] == ["certificate_chain"]
    for bad, said in [
        (leaf.public_bytes(Encoding.PEM).decode(), "not a CA certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not PEM certificates"),
        (chain * 9, "at most 8"),
    ]:
        r = client.put("/v1/me/oms-key", json={"certificate_chain": bad}, headers=h)
        assert r.status_code == 400 and said in r.get_json()["detail"], r.get_json()
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _cert("lab-a ca 2", inter_key, ("lab-a root", root_key), ca=True)
    r = client.put(
        "/v1/me/oms-key",
        json={"certificate_chain": inter.public_bytes(Encoding.PEM).decode()},
        headers=h,
    )
    assert r.status_code == 400 and "no root" in r.get_json()["detail"]
    assert len(listed(client, principals)["items"]) == 1
