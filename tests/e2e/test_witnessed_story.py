"""The witnessed log end to end: `gateway serve` and two `gateway witness serve` processes.

The gateway lists both witnesses (quorum 2); audited accesses, a `key.release` among them;
`gateway audit publish` gets the checkpoint cosigned by both and serves it at
`/v1/audit/tlog/checkpoint`; `gateway audit verify --policy` (the policy `gateway audit
policy` printed) and `--tiles` are ok; the lab's `.tlog-proof` of the `key.release` verifies
offline. With one witness stopped, nothing new is published and the last cosigned
checkpoint stays served.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.audit import trust
from tests.e2e.conftest import BIN, Server, age_program, start_server, stop_server
from tests.e2e.test_access_story import evaluator_identity, upload_with_real_age
from tests.witness.conftest import WitnessProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[tuple[Server, list[WitnessProcess]]]:
    ws = []
    for name in ("lab", "oversight"):
        (tmp_path / name).mkdir()
        w = WitnessProcess(tmp_path / name, f"witness.{name}.test/w1", [])
        w.prepare()  # keys now; the log list once the gateway has its key
        ws.append(w)
    lines = "\n".join(f"{w.url} {' '.join(k.vkey for k in w.keys)}" for w in ws)
    (tmp_path / "gw").mkdir()
    server = start_server(
        tmp_path / "gw",
        {"GATEWAY_AUDIT_WITNESSES": lines, "GATEWAY_AUDIT_QUORUM": "2",
         "GATEWAY_SWEEPER_INTERVAL_SECONDS": "0"},
    )  # fmt: skip
    try:
        vkey = requests.get(server.url + "/v1/audit/key", timeout=10).text.strip()
        for w in ws:
            (w.root / "state" / "logs").write_text(f"logs/v0\nvkey {vkey}\n")
            w.start()
        yield server, ws
    finally:
        for w in ws:
            w.stop()
        stop_server(server)


def _client(server: Server, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in server.env.items() if k != "GATEWAY_CONFIG"}
    env.update({"GATEWAY_URL": server.url, "GATEWAY_TOKEN": server.tokens[who]})
    env["XDG_CONFIG_HOME"] = str(server.root / f"client-{who}")
    return subprocess.run(
        [str(BIN / "gateway"), *args], env=env, cwd=server.root,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _released(server: Server, tmp_path: Path) -> None:
    """An artifact, a grant, and its key released to the evaluator by a download."""
    age = age_program()
    artifact = upload_with_real_age(server, tmp_path, age, b"weights" * 1000)["id"]
    _, recipient = evaluator_identity(tmp_path, age)
    ev = requests.Session()
    ev.headers.update(server.auth("eval"))
    assert ev.put(server.url + "/v1/me/recipient", json={"recipient": recipient}).ok
    req = ev.post(
        f"{server.url}/v1/artifacts/{artifact}/access-requests", json={"justification": "eval"}
    ).json()
    approved = requests.post(
        f"{server.url}/v1/access-requests/{req['id']}/approve", json={}, headers=server.auth("lab")
    )
    assert approved.ok, approved.text
    assert ev.get(f"{server.url}/v1/artifacts/{artifact}/content").status_code == 200


def _served(server: Server) -> str:
    r = requests.get(server.url + "/v1/audit/tlog/checkpoint", headers=server.auth("auditor"))
    assert r.status_code == 200, r.text
    return r.text


def test_checkpoints_cosigned_by_both_witnesses_and_proofs_verified_offline(
    witnessed: tuple[Server, list[WitnessProcess]], tmp_path: Path
) -> None:
    server, ws = witnessed
    _released(server, tmp_path)
    published = server.gateway("audit", "publish", "--force")
    assert "published checkpoint-" in published.stderr, published.stderr
    policy_text = server.gateway("audit", "policy").stdout
    policy_file = tmp_path / "gateway.policy"
    policy_file.write_text(policy_text)
    cosigned = trust.verify_checkpoint(_served(server), trust.parse_policy(policy_text))
    assert {n.split("+")[0] for n in cosigned.cosignatures} == {w.name for w in ws}
    for w in ws:  # each witness serves the checkpoint it cosigned
        assert w.process is not None and w.process.poll() is None
    verified = _client(server, "auditor", "audit", "verify", "--policy", str(policy_file))
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stderr
    tiles = _client(server, "auditor", "audit", "verify", "--policy", str(policy_file), "--tiles")
    assert tiles.returncode == 0 and tiles.stdout.startswith("ok: "), tiles.stderr

    entries = requests.get(server.url + "/v1/audit/entries", headers=server.auth("lab")).json()
    release = next(e for e in entries["items"] if e["entry"]["action"] == "key.release")
    proof = tmp_path / "release.tlog-proof"
    made = _client(server, "lab", "audit", "proof", str(release["index"]), "-o", str(proof))
    assert made.returncode == 0, made.stderr
    stop_server(server)  # offline from here on
    for w in ws:
        w.stop()
    checked = subprocess.run(
        [str(BIN / "gateway"), "audit", "verify-proof", str(proof), "--policy", str(policy_file)],
        capture_output=True, text=True, timeout=60, env={"PATH": str(BIN)},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"ok: entry {release['index']} (key.release by ")
    assert all(w.name in checked.stdout for w in ws), checked.stdout


def test_a_witness_down_holds_publication_and_the_last_checkpoint_stays_served(
    witnessed: tuple[Server, list[WitnessProcess]], tmp_path: Path
) -> None:
    server, ws = witnessed
    none_yet = requests.get(server.url + "/v1/audit/tlog/checkpoint", headers=server.auth("lab"))
    assert none_yet.status_code == 404 and "signed-checkpoint" in none_yet.json()["detail"]
    assert "published" in server.gateway("audit", "publish", "--force").stderr
    before = _served(server)
    ws[1].stop()
    _released(server, tmp_path)
    held = server.gateway("audit", "publish", "--force")
    assert "not cosigned by the witnesses' quorum" in held.stderr, held.stderr
    assert _served(server) == before
    newest = requests.get(
        server.url + "/v1/audit/tlog/signed-checkpoint", headers=server.auth("lab")
    ).text
    assert newest.split("\n")[1] != before.split("\n")[1]  # the fresh entries are in the log
    ws[1].start()
    assert "published" in server.gateway("audit", "publish", "--force").stderr
    assert _served(server).split("\n")[1] == newest.split("\n")[1]
