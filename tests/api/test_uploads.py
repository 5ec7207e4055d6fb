"""Resumable uploads: the happy path, resume, and every refusal leaving things as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.models import Upload, UploadPart
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals

MIB = 1 << 20


def stored_objects(config) -> list[Path]:
    root = Path(config.storage.root)
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_create_answers_the_contract(lab: Lab) -> None:
    up = lab.create(description="a model")
    assert up["state"] == "open"
    assert up["recipient"].startswith("age1")
    assert up["part_size"] == 5 * MIB and up["max_parts"] == 10000
    assert up["expires_at"].endswith("Z")
    assert up["id"]


def test_part_size_is_chosen_so_that_the_parts_hold_the_size(lab: Lab) -> None:
    terabyte = 10**12
    up = lab.create(size=terabyte)
    assert up["part_size"] % MIB == 0
    assert up["part_size"] * up["max_parts"] >= terabyte
    assert lab.create(size=1000)["part_size"] == 5 * MIB


def test_too_large_for_ten_thousand_parts_is_refused(lab: Lab) -> None:
    r = lab.client.post(
        "/v1/uploads",
        json={
            "name": "x",
            "kind": "weights",
            "share_with": ["agency-a"],
            "size": 10000 * 5 * 1024 * MIB + 1,
        },
        headers=lab.auth,
    )
    assert r.status_code == 422 and "10000 parts" in r.get_json()["detail"]


def test_upload_in_any_order_resend_and_complete(lab: Lab, rt, config) -> None:
    plaintext = helpers.random_bytes(12 * MIB + 123)
    up = lab.create()
    data = helpers.age_file(up["recipient"], plaintext)
    parts = helpers.split(data, up["part_size"])
    assert len(parts) == 3
    for n in (3, 1, 2, 1):  # out of order, part 1 sent twice
        assert lab.put(up, n, parts[n - 1]).status_code == 200
    resumed = lab.client.get(f"/v1/uploads/{up['id']}", headers=lab.auth).get_json()
    assert [(p["number"], p["size"], p["sha256"]) for p in resumed["parts"]] == [
        (i, len(p), helpers.sha(p)) for i, p in enumerate(parts, start=1)
    ]
    r = lab.complete(up, data, plaintext)
    assert r.status_code == 201, r.get_json()
    art = r.get_json()
    assert art["state"] == "available" and art["size"] == len(data) and art["org"] == "lab-a"
    assert art["share_with"] == ["agency-a"] and art["manifest"]["plaintext"][
        "sha256"
    ] == helpers.sha(plaintext)
    stored = b"".join(rt.store.open_read(helpers.object_key(rt, art["id"])))
    assert stored == data
    # A completed upload takes no more parts.
    assert lab.put(up, 1, parts[0]).status_code == 409


def test_digest_mismatch_keeps_nothing_and_harms_nothing(lab: Lab, rt) -> None:
    up = lab.create()
    good = helpers.random_bytes(up["part_size"], seed=1)
    assert lab.put(up, 1, good).status_code == 200
    r = lab.put(up, 1, helpers.random_bytes(up["part_size"], seed=2), digest=helpers.sha(good))
    assert r.status_code == 400 and "SHA-256" in r.get_json()["detail"]
    r = lab.put(up, 2, b"abc", digest="0" * 64)
    assert r.status_code == 400
    parts = lab.client.get(f"/v1/uploads/{up['id']}", headers=lab.auth).get_json()["parts"]
    assert parts == [{"number": 1, "size": len(good), "sha256": helpers.sha(good)}]


@pytest.mark.parametrize(
    ("number", "body", "headers", "status", "phrase"),
    [
        (0, b"x", {}, 400, "between 1 and"),
        (10001, b"x", {}, 400, "between 1 and"),
        (-1, b"x", {}, 400, "between 1 and"),
        (1, b"x", {"X-Content-SHA256": None}, 400, "X-Content-SHA256"),
        (1, b"x", {"X-Content-SHA256": "zz"}, 400, "X-Content-SHA256"),
        (1, b"", {}, 400, "empty"),
    ],
)
def test_bad_part_requests(
    lab: Lab, number: int, body: bytes, headers: dict, status: int, phrase: str
) -> None:
    up = lab.create()
    h = {**lab.auth, "X-Content-SHA256": helpers.sha(body)}
    for k, v in headers.items():
        if v is None:
            h.pop(k)
        else:
            h[k] = v
    r = lab.client.put(f"/v1/uploads/{up['id']}/parts/{number}", data=body, headers=h)
    assert r.status_code == status, r.get_json()
    assert phrase in r.get_json()["detail"]


def test_a_body_larger_than_part_size_is_413(lab: Lab) -> None:
    up = lab.create()
    r = lab.put(up, 1, b"\0" * (up["part_size"] + 1))
    assert r.status_code == 413 and "part_size" in r.get_json()["detail"]


def test_a_part_of_the_wrong_size_is_refused_when_the_size_is_known(lab: Lab) -> None:
    up = lab.create(size=12 * MIB)
    r = lab.put(up, 1, b"\0" * MIB)
    assert r.status_code == 400 and "exactly" in r.get_json()["detail"]
    r = lab.put(up, 4, b"\0" * MIB)
    assert r.status_code == 400 and "past the last part" in r.get_json()["detail"]


def test_a_truncated_body_keeps_nothing(lab: Lab) -> None:
    import io

    up = lab.create()
    body = helpers.random_bytes(1000)
    r = lab.client.put(
        f"/v1/uploads/{up['id']}/parts/1",
        input_stream=io.BytesIO(body[:500]),
        headers={**lab.auth, "X-Content-SHA256": helpers.sha(body)},
        environ_overrides={"CONTENT_LENGTH": "1000"},
    )
    assert r.status_code == 400 and "ended before" in r.get_json()["detail"]
    assert lab.client.get(f"/v1/uploads/{up['id']}", headers=lab.auth).get_json()["parts"] == []


@pytest.mark.parametrize(
    "name", ["a/b", "..", "a\\b", "bad\x00name", "tab\tname", "", " ", "x" * 256]
)
def test_bad_names_are_refused(lab: Lab, name: str) -> None:
    r = lab.client.post(
        "/v1/uploads",
        json={"name": name, "kind": "weights", "share_with": ["agency-a"]},
        headers=lab.auth,
    )
    assert r.status_code == 400 and "name" in r.get_json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "m", "kind": "dataset", "share_with": ["agency-a"]},
        {"name": "m", "kind": "weights", "share_with": []},
        {"name": "m", "kind": "weights", "share_with": ["lab-b"]},
        {"name": "m", "kind": "weights", "share_with": ["no-such-agency"]},
        {"name": "m", "kind": "weights", "share_with": ["agency-a"], "size": -5},
        {"name": "m", "kind": "weights", "share_with": ["agency-a"], "size": "big"},
    ],
)
def test_bad_upload_bodies(lab: Lab, body: dict) -> None:
    r = lab.client.post("/v1/uploads", json=body, headers=lab.auth)
    assert r.status_code == 400, r.get_json()


def test_roles_and_other_orgs(lab: Lab, principals: Principals) -> None:
    up = lab.create()
    c = lab.client
    assert (
        c.post(
            "/v1/uploads",
            json={"name": "m", "kind": "weights", "share_with": ["agency-a"]},
            headers=principals.auth("eval"),
        ).status_code
        == 403
    )
    assert c.get(f"/v1/uploads/{up['id']}", headers=principals.auth("lab_b")).status_code == 404
    assert (
        c.put(
            f"/v1/uploads/{up['id']}/parts/1",
            data=b"x",
            headers={**principals.auth("lab_b"), "X-Content-SHA256": helpers.sha(b"x")},
        ).status_code
        == 404
    )
    assert c.delete(f"/v1/uploads/{up['id']}", headers=principals.auth("lab_b")).status_code == 404
    assert c.get("/v1/uploads/up_doesnotexist", headers=lab.auth).status_code == 404


def _completion_refused(
    lab: Lab, rt, up: dict, data: bytes, plaintext: bytes, phrase: str, **kw
) -> None:
    before = stored_objects(rt.config)
    r = kw.pop("response", None) or lab.complete(up, data, plaintext, **kw)
    assert r.status_code == 422, r.get_json()
    assert phrase in r.get_json()["detail"]
    assert stored_objects(rt.config) == before
    with rt.db.session() as s:
        assert s.get(Upload, up["id"]).state == "open"
    # Nothing was harmed: the honest completion still works afterwards.
    assert lab.complete(up, data, plaintext).status_code == 201


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"name": "other"}, "manifest: name"),
        ({"kind": "credential"}, "manifest: kind"),
        ({"upload": "up_other"}, "manifest: upload"),
        ({"version": 2}, "manifest"),
        (
            {"ciphertext": {"size": 1, "part_size": 5 * MIB, "parts_sha256": "0" * 64}},
            "manifest: ciphertext",
        ),
    ],
)
def test_a_manifest_that_lies_is_422(lab: Lab, rt, change: dict, phrase: str) -> None:
    plaintext = b"weights" * 1000
    up = lab.create()
    data = helpers.age_file(up["recipient"], plaintext)
    lab.put_all(up, data)
    _completion_refused(lab, rt, up, data, plaintext, phrase, **change)


def test_parts_sha256_must_match_the_stored_parts(lab: Lab, rt) -> None:
    plaintext = b"weights" * 1000
    up = lab.create()
    data = helpers.age_file(up["recipient"], plaintext)
    lab.put_all(up, data)
    m = helpers.manifest(up, data, plaintext)
    m["ciphertext"]["parts_sha256"] = hashlib.sha256(b"other").hexdigest()
    r = lab.client.post(
        f"/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, lab.key)},
        headers=lab.auth,
    )
    _completion_refused(lab, rt, up, data, plaintext, "parts_sha256", response=r)


def test_a_signature_by_an_unregistered_key_is_422(lab: Lab, rt) -> None:
    from nacl.signing import SigningKey

    plaintext = b"weights"
    up = lab.create()
    data = helpers.age_file(up["recipient"], plaintext)
    lab.put_all(up, data)
    m = helpers.manifest(up, data, plaintext)
    r = lab.client.post(
        f"/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, SigningKey.generate())},
        headers=lab.auth,
    )
    _completion_refused(lab, rt, up, data, plaintext, "signature", response=r)


def test_a_non_age_file_is_422(lab: Lab, rt) -> None:
    up = lab.create()
    data = b"PK\x03\x04 this is a zip, not an age file" * 10
    lab.put_all(up, data)
    r = lab.complete(up, data, b"")
    assert r.status_code == 422 and "not an age v1 file" in r.get_json()["detail"]


def test_an_age_file_for_another_recipient_is_422(lab: Lab, rt) -> None:
    from gateway import age

    up = lab.create()
    other = str(age.X25519Identity.generate().to_recipient())
    data = helpers.age_file(other, b"secret")
    lab.put_all(up, data)
    r = lab.complete(up, data, b"secret")
    assert r.status_code == 422 and up["recipient"] in r.get_json()["detail"]


def test_missing_parts_are_named(lab: Lab, rt) -> None:
    plaintext = helpers.random_bytes(11 * MIB)
    up = lab.create()
    data = helpers.age_file(up["recipient"], plaintext)
    parts = helpers.split(data, up["part_size"])
    lab.put(up, 1, parts[0])
    lab.put(up, 3, parts[2])
    r = lab.complete(up, data, plaintext)
    assert r.status_code == 422 and "parts are missing: 2" in r.get_json()["detail"]


def test_abort_discards_parts(lab: Lab, rt) -> None:
    up = lab.create()
    lab.put(up, 1, b"abc")
    assert lab.client.delete(f"/v1/uploads/{up['id']}", headers=lab.auth).status_code == 204
    body = lab.client.get(f"/v1/uploads/{up['id']}", headers=lab.auth).get_json()
    assert body["state"] == "aborted" and body["parts"] == []
    assert stored_objects(rt.config) == []
    assert lab.put(up, 1, b"abc").status_code == 410


def test_stale_uploads_time_out(lab: Lab, rt, clock) -> None:
    from gateway.sweeper import sweep_once

    up = lab.create()
    lab.put(up, 1, b"abc")
    clock.advance(hours=rt.config.uploads.open_ttl_hours + 1)
    assert lab.put(up, 2, b"abc").status_code == 410
    assert sweep_once(rt)["uploads_timed_out"] == 1
    with rt.db.session() as s:
        assert s.get(Upload, up["id"]).state == "timed_out"
        assert s.query(UploadPart).count() == 0
    assert stored_objects(rt.config) == []


def test_fail_closed_when_the_audit_log_cannot_record(lab: Lab, rt, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    from gateway.audit import store

    def broken(*args, **kwargs):
        raise OperationalError("INSERT INTO audit_entries", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "append", broken)
    r = lab.client.post(
        "/v1/uploads",
        json={"name": "m", "kind": "weights", "share_with": ["agency-a"]},
        headers=lab.auth,
    )
    assert r.status_code == 503
    assert "audit" in r.get_json()["detail"]
    with rt.db.session() as s:
        assert s.query(Upload).count() == 0


def test_client_sees_artifacts_by_role(lab: Lab, principals: Principals) -> None:
    art = lab.push(b"model")
    c = lab.client

    def ids(who):
        return [
            a["id"]
            for a in c.get("/v1/artifacts", headers=principals.auth(who)).get_json()["items"]
        ]

    assert ids("lab") == [art["id"]]
    assert ids("lab_b") == []
    assert ids("eval") == [art["id"]]
    assert ids("eval_b") == []
    assert ids("auditor") == [art["id"]]
    assert ids("admin") == [art["id"]]
    assert c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval_b")).status_code == 404
    assert c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("lab_b")).status_code == 404
    got = c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval")).get_json()
    for key in (
        "id",
        "name",
        "kind",
        "org",
        "size",
        "state",
        "share_with",
        "submitted_at",
        "review_ends_at",
        "manifest",
        "signature",
    ):
        assert key in got


def test_artifact_list_pages(lab: Lab, principals: Principals, clock) -> None:
    made = []
    for i in range(3):
        made.append(lab.push(b"m", name=f"model-{i}")["id"])
        clock.advance(seconds=1)
    r = lab.client.get("/v1/artifacts?limit=2", headers=lab.auth).get_json()
    assert len(r["items"]) == 2 and r["next_cursor"]
    r2 = lab.client.get(
        f"/v1/artifacts?limit=2&cursor={r['next_cursor']}", headers=lab.auth
    ).get_json()
    assert r2["next_cursor"] is None
    assert [a["id"] for a in r["items"] + r2["items"]] == list(reversed(made))
    assert lab.client.get("/v1/artifacts?limit=0", headers=lab.auth).status_code == 400
    assert lab.client.get("/v1/artifacts?cursor=%%%", headers=lab.auth).status_code == 400


def test_signing_keys_are_listed_for_verifiers(
    client: FlaskClient, lab: Lab, principals: Principals
) -> None:
    items = client.get("/v1/orgs/lab-a/signing-keys", headers=principals.auth("eval")).get_json()[
        "items"
    ]
    assert [k["public_key"] for k in items] == [helpers.public_b64(lab.key)]
    assert (
        client.put("/v1/me/signing-key", json={"public_key": "abc"}, headers=lab.auth).status_code
        == 400
    )
    assert (
        client.put(
            "/v1/me/signing-key",
            json={"public_key": helpers.public_b64(lab.key)},
            headers=principals.auth("eval"),
        ).status_code
        == 403
    )


def test_a_post_quantum_custody_key_on_request(lab: Lab, rt) -> None:
    up = lab.create(recipient_type="mlkem768x25519")
    assert up["recipient"].startswith("age1pq1") and up["recipient_type"] == "mlkem768x25519"
    plaintext = b"weights held for years"
    data = helpers.age_file(up["recipient"], plaintext)
    lab.put_all(up, data)
    r = lab.complete(up, data, plaintext)
    assert r.status_code == 201, r.get_json()
    assert lab.create()["recipient_type"] == "x25519"
    r = lab.client.post(
        "/v1/uploads",
        json={"name": "m", "kind": "weights", "share_with": ["agency-a"], "recipient_type": "rsa"},
        headers=lab.auth,
    )
    assert r.status_code == 400 and "recipient_type" in r.get_json()["detail"]


def test_a_part_for_an_upload_the_store_no_longer_holds_is_410(lab: Lab, rt) -> None:
    from gateway.models import Upload as UploadRow

    up = lab.create()
    with rt.db.session() as s:
        row = s.get(UploadRow, up["id"])
        rt.store.abort_upload(row.object_key, row.store_handle)  # as a concurrent abort would
    r = lab.put(up, 1, b"abc")
    assert r.status_code == 410 and "no longer open" in r.get_json()["detail"]


def test_a_failing_object_store_is_503_and_records_nothing(lab: Lab, rt, monkeypatch) -> None:
    from gateway.storage import StorageError

    up = lab.create()

    def full(*args, **kwargs):  # a full disk cannot be caused here: inject it
        raise StorageError("No space left on device")

    monkeypatch.setattr(rt.store, "put_part", full)
    r = lab.put(up, 1, b"abc")
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert "No space" not in r.get_json()["detail"]
    monkeypatch.undo()
    assert lab.client.get(f"/v1/uploads/{up['id']}", headers=lab.auth).get_json()["parts"] == []
