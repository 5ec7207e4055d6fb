"""Lab-held custody through the API: no gateway key, completion checks what it can, the
approval carries the lab's header, content served under it as under a gateway-made one."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gateway import age
from gateway.models import CustodyKey, Grant
from gateway.runtime import Runtime
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import Evaluator, approve, entries, evaluator_for

PLAINTEXT = helpers.random_bytes(150_000, seed=11)


def push_lab(lab: Lab, identity: age.X25519Identity, plaintext: bytes = PLAINTEXT) -> Any:
    """A lab-custody upload encrypted to the lab's own ``identity``, completed."""
    upload = lab.create(custody="lab")
    data = helpers.age_file(str(identity.to_recipient()), plaintext)
    lab.put_all(upload, data)
    return upload, lab.complete(upload, data, plaintext)


def lab_header(lab: Lab, request_id: str, identity: age.Identity, recipient: str) -> bytes:
    r = lab.client.get(f"/v1/access-requests/{request_id}/custody", headers=lab.auth)
    assert r.status_code == 200, r.get_json()
    stored = age.parse_header(base64.b64decode(r.get_json()["header"]))
    return age.reheader(stored, [identity], [age.parse_recipient(recipient)])


def lab_approve(lab: Lab, request_id: str, header: bytes, recipient: str) -> Any:
    body = {"header": base64.b64encode(header).decode(), "recipient": recipient}
    return approve(lab, request_id, **body)


@pytest.fixture
def lab_id() -> age.X25519Identity:
    return age.X25519Identity.generate()


@pytest.fixture
def artifact(lab: Lab, lab_id: age.X25519Identity) -> dict[str, Any]:
    _, r = push_lab(lab, lab_id)
    assert r.status_code == 201, r.get_json()
    return dict(r.get_json())


def test_creation_makes_no_custody_key_and_says_lab(
    lab: Lab, rt: Runtime, client: FlaskClient, principals: Principals
) -> None:
    upload = lab.create(custody="lab")
    assert upload["custody"] == "lab"
    assert upload["recipient"] is None and upload["recipient_type"] is None
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(CustodyKey)) == 0
    created = entries(client, principals, action="upload.create")
    assert created[-1]["details"]["custody"] == "lab"
    r = client.post(
        "/v1/uploads",
        json={"name": "m", "kind": "weights", "share_with": ["agency-a"], "custody": "nobody"},
        headers=lab.auth,
    )
    assert r.status_code == 400 and "custody" in r.get_json()["detail"]


def test_completion_checks_what_it_can_and_says_what_it_did_not(
    artifact: dict[str, Any], lab: Lab, client: FlaskClient, principals: Principals
) -> None:
    assert artifact["custody"] == "lab"
    assert artifact["unchecked"] == ["header-mac", "recipient"]
    done = entries(client, principals, action="upload.complete")[-1]["details"]
    assert done["custody"] == "lab" and done["unchecked"] == ["header-mac", "recipient"]
    upload = lab.create(custody="lab")
    junk = helpers.random_bytes(5000, seed=2)  # not an age file: refused, nothing made
    lab.put_all(upload, junk)
    r = lab.complete(upload, junk, b"x")
    assert r.status_code == 422 and "not an age v1 file" in r.get_json()["detail"]


def test_gateway_custody_artifacts_say_nothing_unchecked(lab: Lab) -> None:
    made = lab.push(b"gateway-held")
    assert made["custody"] == "gateway" and made["unchecked"] == []


def test_approval_carries_the_labs_header_and_the_evaluator_decrypts(
    artifact: dict[str, Any],
    lab: Lab,
    lab_id: age.X25519Identity,
    evaluator: Evaluator,
    rt: Runtime,
    client: FlaskClient,
    principals: Principals,
) -> None:
    req = evaluator.request(artifact)
    r = client.get(f"/v1/access-requests/{req['id']}/custody", headers=lab.auth)
    material = r.get_json()
    assert material["recipient"] == evaluator.recipient and material["custody"] == "lab"
    header = lab_header(lab, req["id"], lab_id, evaluator.recipient)
    r = lab_approve(lab, req["id"], header, evaluator.recipient)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["recipient"] == evaluator.recipient
    body = evaluator.content(artifact)
    assert body.status_code == 200
    assert body.data.startswith(header)
    assert evaluator.decrypt(body.data) == PLAINTEXT
    part = evaluator.content(artifact, "bytes=100-4099")
    assert part.status_code == 206 and part.data == body.data[100:4100]
    decided = entries(client, principals, action="access.approve")[-1]["details"]
    assert decided["custody"] == "lab"
    assert decided["header_sha256"] == helpers.sha(header)
    assert decided["recipient"] == evaluator.recipient
    assert not entries(client, principals, action="key.release")  # nothing made here


def test_approval_without_a_header_is_refused_with_the_way(
    artifact: dict[str, Any], lab: Lab, evaluator: Evaluator
) -> None:
    req = evaluator.request(artifact)
    r = approve(lab, req["id"])
    assert r.status_code == 409
    assert "gateway approve REQUEST -i LAB_IDENTITY" in r.get_json()["detail"]
    assert r.headers["Content-Type"].startswith("application/problem+json")


def test_a_header_on_a_gateway_custody_artifact_is_refused(
    lab: Lab, evaluator: Evaluator, lab_id: age.X25519Identity
) -> None:
    made = lab.push(b"gateway-held")
    req = evaluator.request(made)
    header = age.wrap_file_key(b"k" * 16, [age.parse_recipient(evaluator.recipient)])
    r = lab_approve(lab, req["id"], header, evaluator.recipient)
    assert r.status_code == 400 and "gateway's custody" in r.get_json()["detail"]
    r = lab.client.get(f"/v1/access-requests/{req['id']}/custody", headers=lab.auth)
    assert r.status_code == 409


def test_headers_that_do_not_fit_the_grantee_are_refused(
    artifact: dict[str, Any],
    lab: Lab,
    lab_id: age.X25519Identity,
    evaluator: Evaluator,
    rt: Runtime,
) -> None:
    req = evaluator.request(artifact)
    right = lab_header(lab, req["id"], lab_id, evaluator.recipient)
    hybrid = age.HybridIdentity.generate().to_recipient()
    other_type = lab_header(lab, req["id"], lab_id, str(hybrid))
    r = lab_approve(lab, req["id"], other_type, evaluator.recipient)
    assert r.status_code == 422 and "mlkem768x25519" in r.get_json()["detail"]
    both = age.wrap_file_key(
        b"0" * 16, [age.parse_recipient(evaluator.recipient), lab_id.to_recipient()]
    )
    r = lab_approve(lab, req["id"], both, evaluator.recipient)
    assert r.status_code == 422 and "2 stanzas" in r.get_json()["detail"]
    r = lab_approve(lab, req["id"], right + b"trailing", evaluator.recipient)
    assert r.status_code == 422 and "follow the header" in r.get_json()["detail"]
    r = lab_approve(lab, req["id"], b"not a header", evaluator.recipient)
    assert r.status_code == 422
    big = b"A" * (rt.config.uploads.max_header_bytes + 1)
    r = lab_approve(lab, req["id"], big, evaluator.recipient)
    assert r.status_code in (400, 422)
    r = approve(lab, req["id"], header="!!not base64!!", recipient=evaluator.recipient)
    assert r.status_code == 400
    r = lab_approve(lab, req["id"], right, evaluator.recipient)
    assert r.status_code == 201, r.get_json()  # nothing the refusals did harmed the request


def test_a_recipient_registered_since_the_header_was_made_refuses_it(
    artifact: dict[str, Any],
    lab: Lab,
    lab_id: age.X25519Identity,
    client: FlaskClient,
    principals: Principals,
) -> None:
    ev = evaluator_for(client, principals, "eval2")
    ev.register()
    req = ev.request(artifact)
    old = ev.recipient
    header = lab_header(lab, req["id"], lab_id, old)
    ev.register(type(ev.identity).generate())
    r = lab_approve(lab, req["id"], header, old)
    assert r.status_code == 409 and ev.recipient in r.get_json()["detail"]


def test_revocation_and_withdrawal_end_the_labs_header(
    artifact: dict[str, Any],
    lab: Lab,
    lab_id: age.X25519Identity,
    evaluator: Evaluator,
    rt: Runtime,
) -> None:
    req = evaluator.request(artifact)
    r = lab_approve(
        lab, req["id"], lab_header(lab, req["id"], lab_id, evaluator.recipient), evaluator.recipient
    )
    grant = r.get_json()
    assert evaluator.content(artifact).status_code == 200
    r = lab.client.delete(f"/v1/grants/{grant['id']}", headers=lab.auth)
    assert r.status_code == 204
    assert evaluator.content(artifact).status_code == 403
    with rt.db.session() as session:
        assert session.get(Grant, grant["id"]).header is None  # type: ignore[union-attr]
    r = lab.client.delete(f"/v1/artifacts/{artifact['id']}", headers=lab.auth)
    assert r.status_code in (202, 204), r.get_data()
    assert evaluator.content(artifact).status_code == 410
    with rt.db.session() as session:
        headers = session.scalars(select(Grant.header).where(Grant.artifact_id == artifact["id"]))
        assert all(h is None for h in headers)
    assert not rt.store.exists(helpers.object_key(rt, artifact["id"]))


def test_the_stored_header_opens_only_for_the_lab(
    artifact: dict[str, Any], lab: Lab, lab_id: age.X25519Identity, evaluator: Evaluator
) -> None:
    req = evaluator.request(artifact)
    r = lab.client.get(f"/v1/access-requests/{req['id']}/custody", headers=lab.auth)
    stored = age.read_header(io.BytesIO(base64.b64decode(r.get_json()["header"])))
    assert len(age.unwrap_file_key(stored, [lab_id])) == 16
    with pytest.raises(age.NoIdentityMatchError):
        age.unwrap_file_key(stored, [age.X25519Identity.generate()])
    r = evaluator.client.get(f"/v1/access-requests/{req['id']}/custody", headers=evaluator.auth)
    assert r.status_code in (403, 404)
