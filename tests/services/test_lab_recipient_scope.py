"""What a lab reads of its applicants' recipient registrations: only while they wait on it.

A lab-custody approval proves the recipient it wraps a file key for against the
evaluator's ``identity.recipient.set`` entries, so a lab reads those of a principal with a
request still pending on one of its lab-custody artifacts, in the list and in the web
page of a single entry alike, and no others: not for a request on a gateway-custody
artifact, nor once the request is decided.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from gateway import age
from gateway.services.identity import RECIPIENT_SET
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import Shared, evaluator_for
from tests.services.test_lab_custody import push_lab
from tests.web.conftest import WebUser


def listed(lab: Lab) -> list[int]:
    r = lab.client.get(f"/v1/audit/entries?limit=1000&action={RECIPIENT_SET}", headers=lab.auth)
    assert r.status_code == 200, r.get_json()
    return [int(item["index"]) for item in r.get_json()["items"]]


def page(web: WebUser, index: int) -> int:
    return web.get(f"/ui/audit/entries/{index}").status_code


def test_a_lab_reads_an_applicants_registrations_only_while_a_lab_custody_request_waits(
    lab: Lab, app: Flask, client: FlaskClient, principals: Principals, shared: Shared
) -> None:
    _, done = push_lab(lab, age.X25519Identity.generate())
    assert done.status_code == 201, done.get_json()
    custody: dict[str, Any] = done.get_json()
    ev = evaluator_for(client, principals, "eval")
    ev.register()
    ev.register(type(ev.identity).generate())
    web = WebUser(app.test_client(), principals.tokens["lab"])
    assert web.sign_in().status_code == 303
    r = client.get(f"/v1/audit/entries?action={RECIPIENT_SET}", headers=principals.auth("eval"))
    own = [int(item["index"]) for item in r.get_json()["items"]]
    assert len(own) == 2
    assert listed(lab) == []
    ev.request(shared.artifact)  # gateway custody: the lab needs no recipient proof
    assert listed(lab) == [] and {page(web, i) for i in own} <= {403, 404}
    asked = ev.request(custody)
    assert listed(lab) == own
    assert {page(web, i) for i in own} == {200}
    r = client.post(f"/v1/access-requests/{asked['id']}/deny", json={}, headers=lab.auth)
    assert r.status_code == 200, r.get_json()
    assert listed(lab) == [] and {page(web, i) for i in own} <= {403, 404}
