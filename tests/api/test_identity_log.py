"""Identity changes on record: recipients and signing keys, proof of possession, one holder per key."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from nacl.signing import SigningKey

from gateway import age
from gateway.client import possession
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals

LAB = {"org": "lab-a", "name": "lab"}
LAB_B = {"org": "lab-b", "name": "lab-b"}


def _entries(client: FlaskClient, principals: Principals, who: str, action: str) -> list[Any]:
    r = client.get(f"/v1/audit/entries?limit=1000&action={action}", headers=principals.auth(who))
    assert r.status_code == 200, r.get_json()
    return [item["entry"] for item in r.get_json()["items"]]


def _put_key(client: FlaskClient, principals: Principals, who: str, body: Any) -> Any:
    return client.put("/v1/me/signing-key", json=body, headers=principals.auth(who))


def _org_keys(client: FlaskClient, principals: Principals, org: str = "lab-a") -> list[str]:
    r = client.get(f"/v1/orgs/{org}/signing-keys", headers=principals.auth("auditor"))
    return [k["public_key"] for k in r.get_json()["items"]]


def test_a_signing_key_is_registered_only_with_its_own_proof_for_this_principal(
    client: FlaskClient, principals: Principals
) -> None:
    key = SigningKey.generate()
    good = helpers.key_registration(key, LAB)
    forged = possession.prove(SigningKey.generate(), "lab-a", "lab")["proof"]
    refused = [
        {"public_key": good["public_key"]},  # no proof at all
        helpers.key_registration(key, LAB_B),  # the key's proof for another org
        helpers.key_registration(key, {"org": "lab-a", "name": "someone-else"}),
        {"public_key": good["public_key"], "proof": forged},  # another key's signature
        {"public_key": good["public_key"], "proof": "not base64!"},
    ]
    for body in refused:
        r = _put_key(client, principals, "lab", body)
        assert r.status_code == 400, (body, r.get_json())
        assert r.content_type == "application/problem+json"
    assert "proof" in _put_key(client, principals, "lab", refused[1]).get_json()["detail"]
    assert _org_keys(client, principals) == []
    assert _entries(client, principals, "auditor", "identity.signing_key.register") == []

    assert _put_key(client, principals, "lab", good).status_code == 200
    assert _put_key(client, principals, "lab", good).status_code == 200  # again: nothing new
    (entry,) = _entries(client, principals, "lab", "identity.signing_key.register")
    assert entry["org"] == entry["subject_org"] == "lab-a"
    assert entry["details"]["public_key"] == good["public_key"]
    assert (entry["details"]["old"], entry["details"]["new"]) == (None, "active")
    assert _org_keys(client, principals) == [good["public_key"]]


def test_one_org_cannot_register_a_key_another_holds(lab: Lab, principals: Principals) -> None:
    client, held = lab.client, helpers.public_b64(lab.key)
    r = _put_key(client, principals, "lab_b", helpers.key_registration(lab.key, LAB_B))
    assert r.status_code == 409, r.get_json()
    assert "another organisation" in r.get_json()["detail"]
    assert _org_keys(client, principals) == [held]
    assert _org_keys(client, principals, "lab-b") == []
    registered = _entries(client, principals, "auditor", "identity.signing_key.register")
    assert [e["subject_org"] for e in registered] == ["lab-a"]


def test_a_revoked_key_is_on_record_and_never_taken_again(lab: Lab, principals: Principals) -> None:
    client = lab.client
    (key,) = client.get("/v1/me/signing-keys", headers=lab.auth).get_json()["items"]
    path = f"/v1/me/signing-keys/{key['id']}"
    assert client.delete(path, headers=principals.auth("lab_b")).status_code == 404
    assert client.delete(path, headers=principals.auth("eval")).status_code == 403
    assert client.delete("/v1/me/signing-keys/key_nope", headers=lab.auth).status_code == 404
    assert _entries(client, principals, "auditor", "identity.signing_key.revoke") == []

    assert client.delete(path, headers=lab.auth).status_code == 204
    (entry,) = _entries(client, principals, "lab", "identity.signing_key.revoke")
    assert entry["subject_org"] == "lab-a" and entry["details"]["key"] == key["id"]
    assert (entry["details"]["old"], entry["details"]["new"]) == ("active", "revoked")
    assert client.delete(path, headers=lab.auth).status_code == 409
    (listed,) = client.get("/v1/me/signing-keys", headers=lab.auth).get_json()["items"]
    assert listed["revoked_at"] is not None
    assert _org_keys(client, principals) == []
    again = _put_key(client, principals, "lab", helpers.key_registration(lab.key, LAB))
    assert again.status_code == 409 and "revoked" in again.get_json()["detail"]

    upload = lab.create()
    data = helpers.age_file(upload["recipient"], b"weights")
    lab.put_all(upload, data)
    r = lab.complete(upload, data, b"weights")
    assert r.status_code == 422, r.get_json()
    assert len(_entries(client, principals, "auditor", "identity.signing_key.revoke")) == 1


def test_each_recipient_change_is_an_entry_with_the_old_and_the_new(
    client: FlaskClient, principals: Principals
) -> None:
    first, second = (str(age.X25519Identity.generate().to_recipient()) for _ in range(2))
    for recipient in (first, first, second):
        r = client.put(
            "/v1/me/recipient", json={"recipient": recipient}, headers=principals.auth("eval")
        )
        assert r.status_code == 200, r.get_json()
    entries = _entries(client, principals, "eval", "identity.recipient.set")
    assert [(e["details"]["old"], e["details"]["new"]) for e in entries] == [
        (None, first),
        (first, second),
    ]
    assert {e["subject_org"] for e in entries} == {"agency-a"}
    assert entries == _entries(client, principals, "eval2", "identity.recipient.set")
    assert _entries(client, principals, "eval_b", "identity.recipient.set") == []
    assert _entries(client, principals, "lab", "identity.recipient.set") == []
