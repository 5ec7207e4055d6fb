"""Completion with manifest v2: the gateway checks its shape and ciphertext side, refuses
a bad one with 422 problem+json, and keeps version 1 working beside it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.models import Upload
from tests import helpers
from tests.api.conftest import Lab

PLAIN = b"api-key-" * 100


def _v2(m: dict[str, Any], **plaintext: Any) -> dict[str, Any]:
    plain = plaintext or {"size": m["plaintext"]["size"], "commitment": "c0" * 32}
    return {**m, "version": 2, "plaintext": plain}


def _complete(lab: Lab, up: dict[str, Any], m: dict[str, Any]) -> Any:
    return lab.client.post(
        f"/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, lab.key)},
        headers=lab.auth,
    )


def test_a_v2_manifest_completes_and_is_shown_as_signed(lab: Lab) -> None:
    up = lab.create()
    data = helpers.age_file(up["recipient"], PLAIN)
    lab.put_all(up, data)
    m = _v2(helpers.manifest(up, data, PLAIN))
    r = _complete(lab, up, m)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["manifest"] == m and helpers.sha(PLAIN) not in r.get_data(as_text=True)


@pytest.mark.parametrize(
    ("plaintext", "field"),
    [
        ({"size": len(PLAIN), "commitment": "C0" * 32}, "plaintext.commitment"),
        ({"size": len(PLAIN), "sha256": "c0" * 32}, "plaintext.commitment"),
        ({"size": len(PLAIN), "archive": "c0" * 32, "files": []}, "plaintext.files"),
        ({"size": 10**9, "commitment": "c0" * 32}, "ciphertext.size"),
    ],
)
def test_a_bad_v2_manifest_is_422_problem_json_and_harms_nothing(
    lab: Lab, rt: Any, plaintext: dict[str, Any], field: str
) -> None:
    up = lab.create()
    data = helpers.age_file(up["recipient"], PLAIN)
    lab.put_all(up, data)
    good = helpers.manifest(up, data, PLAIN)
    r = _complete(lab, up, _v2(good, **plaintext))
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert r.get_json()["detail"].startswith(f"manifest: {field}")
    with rt.db.session() as s:
        assert s.get(Upload, up["id"]).state == "open"
    assert _complete(lab, up, _v2(good)).status_code == 201
