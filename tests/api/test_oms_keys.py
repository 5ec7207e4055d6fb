"""OpenSSF Model Signing keys: a lab registers one, verifiers list its org's, each one logged."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from flask.testing import FlaskClient

from gateway.models import OmsKey
from tests.conftest import Principals
from tests.services.conftest import entries


def ec_public(curve: ec.EllipticCurve) -> tuple[str, str]:
    """A new key's public PEM and its fingerprint (SHA-256 of the DER)."""
    key = ec.generate_private_key(curve).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, hashlib.sha256(der).hexdigest()


def put(client: FlaskClient, principals: Principals, pem: str, who: str = "lab") -> Any:
    return client.put("/v1/me/oms-key", json={"public_key": pem}, headers=principals.auth(who))


def stored(rt: Any) -> list[str]:
    with rt.db.session() as s:
        return [k.fingerprint for k in s.query(OmsKey).all()]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_a_registered_key_is_listed_for_verifiers_and_logged(
    client: FlaskClient, principals: Principals, curve: ec.EllipticCurve
) -> None:
    pem, fingerprint = ec_public(curve)
    r = put(client, principals, pem)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["fingerprint"] == fingerprint and r.get_json()["principal"] == "lab"
    for who in ("eval", "auditor", "lab_b", "lab"):
        got = client.get("/v1/orgs/lab-a/oms-keys", headers=principals.auth(who))
        assert got.status_code == 200, got.get_json()
        items = got.get_json()["items"]
        assert [(k["fingerprint"], k["public_key"]) for k in items] == [(fingerprint, pem)]
    assert client.get("/v1/orgs/lab-b/oms-keys", headers=principals.auth("eval")).get_json() == {
        "items": [],
        "revoked": [],
    }
    logged = entries(client, principals, action="identity.oms_key.register")
    assert [(e["org"], e["details"]["fingerprint"]) for e in logged] == [("lab-a", fingerprint)]
    # Registered again: the same key, nothing new stored or logged.
    assert put(client, principals, pem).get_json()["fingerprint"] == fingerprint
    assert len(entries(client, principals, action="identity.oms_key.register")) == 1


def _private_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def _other(key: Any) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    ("pem", "said"),
    [
        ("not a key", "not a PEM public key"),
        (_private_pem(), "not a PEM public key"),
        (_other(ed25519.Ed25519PrivateKey.generate()), "not an elliptic-curve key"),
        (_other(rsa.generate_private_key(65537, 2048)), "not an elliptic-curve key"),
        (_other(ec.generate_private_key(ec.SECP521R1())), "curve secp521r1"),
        ("-----BEGIN PUBLIC KEY-----\n" + "A" * 5000, "at most 4096"),
    ],
    ids=["text", "private", "ed25519", "rsa", "p521", "huge"],
)
def test_what_is_not_such_a_key_is_refused_by_name(
    client: FlaskClient, principals: Principals, rt: Any, pem: str, said: str
) -> None:
    r = put(client, principals, pem)
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert said in r.get_json()["detail"]
    assert stored(rt) == []


def test_only_a_lab_registers_and_an_unknown_org_is_404(
    client: FlaskClient, principals: Principals, rt: Any
) -> None:
    pem, _ = ec_public(ec.SECP256R1())
    assert put(client, principals, pem, who="eval").status_code == 403
    assert put(client, principals, pem, who="auditor").status_code == 403
    assert client.put("/v1/me/oms-key", json={}, headers=principals.auth("lab")).status_code == 400
    both = {"public_key": pem, "certificate_chain": pem}
    r = client.put("/v1/me/oms-key", json=both, headers=principals.auth("lab"))
    assert r.status_code == 400 and "exactly one" in r.get_json()["detail"]
    assert stored(rt) == []
    r = client.get("/v1/orgs/no-such-org/oms-keys", headers=principals.auth("eval"))
    assert r.status_code == 404


def test_no_registration_when_the_audit_log_cannot_record(
    client: FlaskClient, principals: Principals, rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from gateway.audit import store

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT INTO audit_entries", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "append", broken)
    pem, _ = ec_public(ec.SECP256R1())
    r = put(client, principals, pem)
    assert r.status_code == 503 and "audit" in r.get_json()["detail"]
    assert stored(rt) == []
