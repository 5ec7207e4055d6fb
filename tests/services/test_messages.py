"""What refusals say: the words a person reads to know what failed and what to do."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from gateway.errors import BadRequest
from gateway.runtime import Runtime
from gateway.services import identity
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals


def test_a_role_that_does_not_fit_an_agency_says_an_agency(
    rt: Runtime, principals: Principals
) -> None:
    with rt.db.session() as session, pytest.raises(BadRequest) as refused:
        identity.create_token(
            session, org="agency-a", role="lab", name="x", ttl_days=1, now=rt.now()
        )
    assert "(an agency: its principals are evaluators)" in str(refused.value)


def test_a_completion_whose_signature_fails_says_what_failed_and_what_to_do(lab: Lab) -> None:
    upload = lab.create()
    plaintext = helpers.random_bytes(1000, seed=5)
    data = helpers.age_file(upload["recipient"], plaintext)
    lab.put_all(upload, data)
    manifest = helpers.manifest(upload, data, plaintext)
    body = {"manifest": manifest, "signature": helpers.sign(manifest, SigningKey.generate())}
    r = lab.client.post(f"/v1/uploads/{upload['id']}/complete", json=body, headers=lab.auth)
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    detail = r.get_json()["detail"]
    assert (
        "the manifest's signature does not verify under the signing key lab-a has registered"
        in detail
    )
    assert "PUT /v1/me/signing-key" in detail and "complete again" in detail
