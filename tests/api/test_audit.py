"""The audit API: who reads what, signed checkpoints, proofs that verify, denials on record."""

from __future__ import annotations

import base64

from flask.testing import FlaskClient

from gateway.audit import merkle, note
from tests.api.conftest import Lab
from tests.conftest import Principals


def _entries(client: FlaskClient, principals: Principals, who: str, query: str = "") -> list[dict]:
    r = client.get(f"/v1/audit/entries?limit=1000{query}", headers=principals.auth(who))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def test_labs_see_entries_about_their_own_artifacts_only(lab: Lab, principals: Principals) -> None:
    c = lab.client
    art = lab.push(b"weights")
    c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval"))
    everything = _entries(c, principals, "auditor")
    actions = [i["entry"]["action"] for i in everything]
    assert (
        "upload.create" in actions and "upload.complete" in actions and "artifact.read" in actions
    )
    own = _entries(c, principals, "lab")
    assert own and all(
        i["entry"]["artifact"] == art["id"] or i["entry"]["org"] == "lab-a" for i in own
    )
    assert any(
        i["entry"]["action"] == "artifact.read" and i["entry"]["role"] == "evaluator" for i in own
    )
    assert _entries(c, principals, "lab_b") == []
    assert c.get("/v1/audit/entries", headers=principals.auth("admin")).status_code == 403


def test_each_item_carries_its_exact_leaf(lab: Lab, principals: Principals) -> None:
    lab.push(b"weights")
    import json

    for item in _entries(lab.client, principals, "auditor"):
        leaf = base64.b64decode(item["leaf"])
        assert json.loads(leaf) == item["entry"]
        assert item["entry"]["index"] == item["index"]


def test_filters_and_paging(lab: Lab, principals: Principals) -> None:
    lab.push(b"a", name="a")
    lab.push(b"b", name="b")
    creates = _entries(lab.client, principals, "auditor", "&action=upload.create")
    assert len(creates) == 2 and all(i["entry"]["action"] == "upload.create" for i in creates)
    first = lab.client.get(
        "/v1/audit/entries?limit=2", headers=principals.auth("auditor")
    ).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = lab.client.get(
        f"/v1/audit/entries?limit=1000&cursor={first['next_cursor']}",
        headers=principals.auth("auditor"),
    ).get_json()
    assert rest["items"][0]["index"] == first["items"][-1]["index"] + 1


def test_checkpoint_and_proofs_verify_under_the_published_key(
    lab: Lab, principals: Principals
) -> None:
    c = lab.client
    lab.push(b"weights")
    vkey = c.get("/v1/audit/key").get_data(as_text=True).strip()  # anyone may fetch the key
    old_text = c.get("/v1/audit/checkpoint", headers=principals.auth("auditor")).get_data(
        as_text=True
    )
    old = note.open_checkpoint(old_text, [vkey], origin="test.gateway/audit")
    lab.push(b"more weights", name="second")
    new = note.open_checkpoint(
        c.get("/v1/audit/checkpoint", headers=lab.auth).get_data(as_text=True), [vkey]
    )
    assert new.size > old.size

    items = _entries(c, principals, "auditor")
    for item in items[: new.size]:
        proof = c.get(
            f"/v1/audit/proof/inclusion?index={item['index']}&size={new.size}",
            headers=principals.auth("auditor"),
        ).get_json()
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        merkle.verify_inclusion(
            item["index"],
            new.size,
            merkle.leaf_hash(base64.b64decode(item["leaf"])),
            hashes,
            new.root,
        )

    cons = c.get(
        f"/v1/audit/proof/consistency?old={old.size}&new={new.size}", headers=lab.auth
    ).get_json()
    merkle.verify_consistency(
        old.size, new.size, [base64.b64decode(h) for h in cons["hashes"]], old.root, new.root
    )


def test_bad_proof_queries_are_400(lab: Lab, principals: Principals) -> None:
    lab.push(b"w")
    a = principals.auth("auditor")
    c = lab.client
    assert c.get("/v1/audit/proof/inclusion?index=999&size=3", headers=a).status_code == 400
    assert c.get("/v1/audit/proof/inclusion?index=0&size=99999", headers=a).status_code == 400
    assert c.get("/v1/audit/proof/inclusion?index=x", headers=a).status_code == 400
    assert c.get("/v1/audit/proof/consistency?old=5&new=2", headers=a).status_code == 400
    assert c.get("/v1/audit/proof/consistency", headers=a).status_code == 400
    assert (
        c.get("/v1/audit/proof/inclusion?index=0", headers=principals.auth("admin")).status_code
        == 403
    )


def test_denials_of_authenticated_principals_are_logged_but_anonymous_401s_are_not(
    lab: Lab, principals: Principals
) -> None:
    c = lab.client
    before = len(_entries(c, principals, "auditor"))
    for _ in range(5):
        assert c.get("/v1/artifacts").status_code == 401
        assert (
            c.get("/v1/artifacts", headers={"Authorization": "Bearer gw_forged"}).status_code == 401
        )
    assert len(_entries(c, principals, "auditor")) == before
    assert (
        c.post(
            "/v1/uploads",
            json={"name": "x", "kind": "weights", "share_with": ["agency-a"]},
            headers=principals.auth("eval"),
        ).status_code
        == 403
    )
    denied = _entries(c, principals, "auditor", "&action=auth.denied")
    assert len(denied) == 1
    e = denied[0]["entry"]
    assert (
        e["outcome"] == "denied"
        and e["role"] == "evaluator"
        and e["details"]["attempted"] == "upload.create"
    )


def test_admin_actions_are_logged(rt, principals: Principals, client: FlaskClient) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    cfg_env = {
        "GATEWAY_DATABASE_URL": rt.config.database.url,
        "GATEWAY_KEYS_DIR": rt.config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(rt.config.storage.root),
    }
    runner = CliRunner(env=cfg_env)
    r = runner.invoke(main, ["admin", "org", "create", "new-agency", "--kind", "agency"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        main,
        ["admin", "token", "create", "--org", "new-agency", "--role", "evaluator", "--name", "zed"],
    )
    assert r.exit_code == 0 and r.stdout.strip().startswith("gw_")
    token = r.stdout.strip()
    assert (
        client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).get_json()["org"]
        == "new-agency"
    )
    r = runner.invoke(
        main, ["admin", "token", "create", "--org", "new-agency", "--role", "lab", "--name", "zed"]
    )
    assert (
        r.exit_code == 1
        and "gateway: error: role lab does not fit organisation new-agency" in r.stderr
    )
    actions = [i["entry"]["action"] for i in _entries(client, principals, "auditor")]
    assert "admin.org.create" in actions and "admin.token.create" in actions
    assert token not in str(_entries(client, principals, "auditor"))
