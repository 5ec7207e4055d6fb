"""The access story against a real `gateway serve`: upload, request, approve, download, decrypt, prove."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import requests
from nacl.signing import SigningKey

from tests import helpers
from tests.e2e.conftest import Server, age_program

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20


def upload_with_real_age(server: Server, tmp_path: Path, age: str, plaintext: bytes) -> dict:
    s = requests.Session()
    s.headers.update(server.auth("lab"))
    key = SigningKey.generate()
    me = s.get(server.url + "/v1/me").json()
    assert s.put(server.url + "/v1/me/signing-key", json=helpers.key_registration(key, me)).ok
    up = s.post(
        server.url + "/v1/uploads",
        json={"name": "weights.bin", "kind": "weights", "share_with": ["agency-a"]},
    ).json()
    (tmp_path / "weights.bin").write_bytes(plaintext)
    subprocess.run(
        [
            age,
            "-r",
            up["recipient"],
            "-o",
            str(tmp_path / "weights.age"),
            str(tmp_path / "weights.bin"),
        ],
        check=True,
    )
    data = (tmp_path / "weights.age").read_bytes()
    for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
        r = s.put(
            f"{server.url}/v1/uploads/{up['id']}/parts/{n}",
            data=part,
            headers={"X-Content-SHA256": helpers.sha(part)},
        )
        assert r.status_code == 200, r.text
    m = helpers.manifest(up, data, plaintext)
    r = s.post(
        f"{server.url}/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, key)},
    )
    assert r.status_code == 201, r.text
    return r.json()


def evaluator_identity(tmp_path: Path, age: str) -> tuple[Path, str]:
    keygen = str(Path(age).with_name("age-keygen"))
    identity = tmp_path / "evaluator.key"
    subprocess.run([keygen, "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(
        [keygen, "-y", str(identity)], check=True, capture_output=True, text=True
    )
    return identity, recipient.stdout.strip()


def interrupted_then_resumed(server: Server, artifact: str, stop_after: int) -> bytes:
    url = f"{server.url}/v1/artifacts/{artifact}/content"
    got = bytearray()
    with requests.get(url, headers=server.auth("eval"), stream=True, timeout=60) as r:
        assert r.status_code == 200
        for block in r.iter_content(64 * 1024):
            got += block
            if len(got) >= stop_after:
                break  # the connection drops here
    with requests.get(
        url, headers={**server.auth("eval"), "Range": f"bytes={len(got)}-"}, timeout=60
    ) as r:
        assert r.status_code == 206, r.text
        assert r.headers["Content-Range"].startswith(f"bytes {len(got)}-")
        got += r.content
    return bytes(got)


def verify_log(server: Server, actions: list[str]) -> None:
    """Each action's entries are in the log the signed checkpoint commits to."""
    from gateway.audit import merkle, note

    auditor = server.auth("auditor")
    key = requests.get(server.url + "/v1/audit/key", timeout=10).text.strip()
    signed = requests.get(server.url + "/v1/audit/checkpoint", headers=auditor, timeout=10).text
    checkpoint = note.open_checkpoint(signed, [key], origin="e2e.gateway/audit")
    for action in actions:
        items = requests.get(
            server.url + "/v1/audit/entries",
            params={"action": action, "limit": 1000},
            headers=auditor,
            timeout=10,
        ).json()["items"]
        covered = [item for item in items if item["index"] < checkpoint.size]
        assert covered, action
        for item in covered:
            leaf = base64.b64decode(item["leaf"])
            proof = requests.get(
                server.url + "/v1/audit/proof/inclusion",
                headers=auditor,
                timeout=10,
                params={"index": item["index"], "size": checkpoint.size},
            ).json()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            merkle.verify_inclusion(
                item["index"], checkpoint.size, merkle.leaf_hash(leaf), hashes, checkpoint.root
            )
            with pytest.raises(merkle.ProofError):  # a changed entry does not verify
                merkle.verify_inclusion(
                    item["index"],
                    checkpoint.size,
                    merkle.leaf_hash(leaf + b" "),
                    hashes,
                    checkpoint.root,
                )


def test_evaluator_gets_the_labs_plaintext_under_a_grant(server: Server, tmp_path: Path) -> None:
    age = age_program()
    plaintext = helpers.random_bytes(11 * MIB + 777, seed=11)
    artifact = upload_with_real_age(server, tmp_path, age, plaintext)["id"]
    identity, recipient = evaluator_identity(tmp_path, age)
    ev = requests.Session()
    ev.headers.update(server.auth("eval"))
    assert ev.put(server.url + "/v1/me/recipient", json={"recipient": recipient}).ok
    assert (
        ev.get(f"{server.url}/v1/artifacts/{artifact}/content").status_code == 403
    )  # no grant yet
    outsider = requests.post(
        f"{server.url}/v1/artifacts/{artifact}/access-requests",
        json={"justification": "x"},
        headers=server.auth("eval_b"),
        timeout=10,
    )
    assert outsider.status_code == 404

    req = ev.post(
        f"{server.url}/v1/artifacts/{artifact}/access-requests",
        json={"justification": "pre-deployment evaluation", "duration_hours": 48},
    ).json()
    assert req["state"] == "pending"
    grant = requests.post(
        f"{server.url}/v1/access-requests/{req['id']}/approve",
        json={"duration_hours": 24},
        headers=server.auth("lab"),
        timeout=10,
    )
    assert grant.status_code == 201, grant.text

    whole = ev.get(f"{server.url}/v1/artifacts/{artifact}/content")
    assert whole.status_code == 200 and int(whole.headers["Content-Length"]) == len(whole.content)
    resumed = interrupted_then_resumed(server, artifact, stop_after=3 * MIB)
    assert resumed == whole.content
    (tmp_path / "evaluator.age").write_bytes(resumed)
    subprocess.run(
        [
            age,
            "-d",
            "-i",
            str(identity),
            "-o",
            str(tmp_path / "out.bin"),
            str(tmp_path / "evaluator.age"),
        ],
        check=True,
    )
    assert (tmp_path / "out.bin").read_bytes() == plaintext

    verify_log(server, ["access.request", "access.approve", "key.release", "content.download"])
    releases = requests.get(
        server.url + "/v1/audit/entries",
        params={"action": "key.release"},
        headers=server.auth("auditor"),
        timeout=10,
    ).json()["items"]
    assert len(releases) == 1  # three downloads, one release

    assert (
        requests.delete(
            f"{server.url}/v1/artifacts/{artifact}", headers=server.auth("lab"), timeout=10
        ).status_code
        == 204
    )
    assert ev.get(f"{server.url}/v1/artifacts/{artifact}/content").status_code == 410
    assert not [p for p in (server.root / "var" / "objects").rglob("*.age") if p.is_file()]
