"""Who reads which entries (labs, agencies, auditors), entries with their proofs, heads entries."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask.testing import FlaskClient

from gateway.audit import merkle, note
from gateway.audit.leaf import HEADS_ACTION, concerns
from gateway.runtime import Runtime
from gateway.services import anchor
from tests.api.conftest import Lab
from tests.conftest import Principals


def _get(client: FlaskClient, principals: Principals, who: str, query: str = "") -> Any:
    r = client.get(f"/v1/audit/entries?limit=1000{query}", headers=principals.auth(who))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def _seen(client: FlaskClient, principals: Principals, who: str, query: str = "") -> list[dict]:
    return [i["entry"] for i in _get(client, principals, who, query)["items"]]


def _story(lab: Lab, principals: Principals) -> dict[str, Any]:
    """lab-a's artifact, read by agency-a's evaluator and refused (404) to agency-b's."""
    art = lab.push(b"weights")
    c = lab.client
    assert c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval")).status_code == 200
    assert c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval_b")).status_code == 404
    return art


def test_each_org_reads_the_entries_that_concern_it(lab: Lab, principals: Principals) -> None:
    art = _story(lab, principals)
    c = lab.client
    everything = _seen(c, principals, "auditor")
    for who, org in (("lab", "lab-a"), ("eval", "agency-a"), ("eval_b", "agency-b")):
        mine = _seen(c, principals, who)
        assert mine == [e for e in everything if org in concerns(e)], who
    agency = _seen(c, principals, "eval")
    assert [e["action"] for e in agency] == ["artifact.read"]
    assert agency[0]["subject_org"] == "lab-a" and agency[0]["artifact"] == art["id"]
    # agency-b's own evaluator was refused with a 404: the entry is lab-a's alone, since
    # showing it to agency-b would tell agency-b who owns that artifact.
    refusal = [e for e in everything if e["action"] == "auth.denied"]
    assert len(refusal) == 1 and refusal[0]["org"] == "agency-b"
    assert refusal[0] in _seen(c, principals, "lab")
    assert _seen(c, principals, "eval_b") == []
    assert _seen(c, principals, "lab_b") == []


def test_concerning_narrows_a_list_to_one_org(lab: Lab, principals: Principals) -> None:
    _story(lab, principals)
    c = lab.client
    everything = _seen(c, principals, "auditor")
    for org in ("lab-a", "agency-a", "agency-b", "nobody"):
        assert _seen(c, principals, "auditor", f"&concerning={org}") == [
            e for e in everything if org in concerns(e)
        ]
    # a lab asking for another org's entries gets only what its scope holds: none of them
    assert _seen(c, principals, "lab_b", "&concerning=lab-a") == []
    assert _seen(c, principals, "eval", "&concerning=lab-a") == _seen(c, principals, "eval")


def _verify_items(body: dict[str, Any], checkpoint: note.Checkpoint) -> None:
    assert body["size"] == checkpoint.size
    for item in body["items"]:
        leaf = base64.b64decode(item["leaf"])
        assert json.loads(leaf) == item["entry"]
        proof = [base64.b64decode(h) for h in item["proof"]]
        merkle.verify_inclusion(
            item["index"], checkpoint.size, merkle.leaf_hash(leaf), proof, checkpoint.root
        )


def test_entries_with_proofs_verify_against_the_checkpoint_of_their_size(
    lab: Lab, principals: Principals
) -> None:
    _story(lab, principals)
    c = lab.client
    vkey = c.get("/v1/audit/key").get_data(as_text=True).strip()
    text = c.get("/v1/audit/checkpoint", headers=principals.auth("eval")).get_data(as_text=True)
    old = note.open_checkpoint(text, [vkey])
    lab.push(b"more", name="second")  # entries past the checkpoint the client holds
    body = _get(c, principals, "lab", f"&with_proofs=1&size={old.size}")
    assert body["items"] and all(i["index"] < old.size for i in body["items"])
    _verify_items(body, old)
    whole = _get(c, principals, "eval", "&with_proofs=1")
    _verify_items(
        whole,
        note.open_checkpoint(
            c.get("/v1/audit/checkpoint", headers=lab.auth).get_data(as_text=True), [vkey]
        ),
    )
    assert "proof" not in _get(c, principals, "lab")["items"][0]


def test_bad_proof_listings_are_refused(lab: Lab, principals: Principals) -> None:
    _story(lab, principals)
    c = lab.client
    for query, status in (
        ("with_proofs=2", 400),
        ("with_proofs=yes", 400),
        ("size=3", 400),  # a size only means something with proofs
        ("with_proofs=1&size=0", 400),
        ("with_proofs=1&size=99999", 400),
        ("with_proofs=1&size=x", 400),
    ):
        r = c.get(f"/v1/audit/entries?{query}", headers=principals.auth("lab"))
        assert r.status_code == status, (query, r.get_json())
        assert r.mimetype == "application/problem+json"
    assert (
        c.get("/v1/audit/entries?with_proofs=1", headers=principals.auth("admin")).status_code
        == 403
    )


def test_each_publication_appends_a_heads_entry_per_org_that_ends_its_checkpoint(
    lab: Lab, principals: Principals, rt: Runtime
) -> None:
    _story(lab, principals)
    c = lab.client
    before = _seen(c, principals, "auditor")
    name = anchor.publish(rt, force=True)
    assert name is not None
    everything = _seen(c, principals, "auditor")
    run = everything[len(before) :]
    latest: dict[str, int] = {}
    for e in before:
        latest.update(dict.fromkeys(concerns(e), e["index"]))
    assert set(latest) == {"lab-a", "agency-a"}
    # One per org with entries, in org name order, each naming that org alone.
    assert [(e["action"], e["subject_org"], e["prev"]) for e in run] == [
        (HEADS_ACTION, org, {org: latest[org]}) for org in sorted(latest)
    ]
    size = int(name.split("-")[1])
    assert size == len(everything)  # the published checkpoint ends with the run
    # Each org's own heads entry ends its view, so following its chain finds it.
    for who, org in (("lab", "lab-a"), ("eval", "agency-a")):
        mine = _seen(c, principals, who)
        assert [e for e in mine if e["action"] == HEADS_ACTION] == [
            e for e in run if e["subject_org"] == org
        ]
        assert mine[-1]["subject_org"] == org
    for who in ("lab_b", "eval_b"):  # no entries concern them, so no chain to pin
        assert _seen(c, principals, who) == []
    lab.push(b"after", name="after")
    own = next(e["index"] for e in run if e["subject_org"] == "lab-a")
    after = [e for e in _seen(c, principals, "lab") if e["index"] > own]
    assert after[0]["prev"]["lab-a"] == own
