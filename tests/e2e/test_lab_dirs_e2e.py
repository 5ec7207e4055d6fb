"""A model directory under lab-held custody, against a real `gateway serve`: pushed as one
archive encrypted to the lab's own recipient, approved with the lab's identity, restored by
`gateway pull -o DIR` and by the real `age -d | tar -x`, each `diff -r` identical; a push
killed midway resumes, and its header is still the one approvals are held to."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from gateway import age as agelib
from tests import helpers
from tests.client.test_dir_e2e import _ec_keys
from tests.e2e.conftest import BIN, Server, age_program
from tests.e2e.test_lab_custody_e2e import client, keygen

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20


def write_model(root: Path, shards: int, shard_bytes: int, seed: int) -> Path:
    """A synthetic model: shards, an index, a config, a tokenizer subfolder, an empty file."""
    root.mkdir(parents=True)
    names = [f"model-{n:05d}-of-{shards:05d}.safetensors" for n in range(1, shards + 1)]
    for n, name in enumerate(names):
        (root / name).write_bytes(helpers.random_bytes(shard_bytes + n * 4099, seed=seed + n))
    index = {"weight_map": {f"layers.{n}.weight": name for n, name in enumerate(names)}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 512}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    (root / "tokenizer" / "empty.txt").write_text("")
    return root


def same_tree(a: Path, b: Path) -> None:
    done = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def by_age(age: str, identity: Path, raw: Path, dest: Path) -> None:
    """``age -d -i IDENTITY FILE | tar -x -C DEST``, the standard tools only."""
    dest.mkdir()
    dec = subprocess.Popen([age, "-d", "-i", str(identity), str(raw)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=dec.stdout, check=False)
    assert dec.wait() == 0 and tar.returncode == 0


def lab_push_args(outside: Path, model: Path, recipient: str, *extra: str) -> list[str]:
    return [
        *("push", str(model), "--custody", "lab", "-r", recipient),
        *("--share-with", "agency-a", "--signing-key", str(outside / "lab.key"), *extra),
    ]


def setup_keys(server: Server, homes: Path, outside: Path) -> tuple[str, str]:
    """The lab's age recipient and signing key, the evaluator's age key: (lab, evaluator)."""
    age = age_program()
    lab = keygen(age, outside / "lab.agekey")
    client(server, homes, "lab", "keygen", "--type", "signing", "-o", str(outside / "lab.key"))
    client(server, homes, "eval", "keygen", "--type", "age", "-o", str(outside / "eval.agekey"))
    evaluator = agelib.parse_identities((outside / "eval.agekey").read_text())[0]
    return lab, str(evaluator.to_recipient())


def approve(server: Server, homes: Path, outside: Path, artifact: str, evaluator: str) -> str:
    """The evaluator requests the artifact and the lab approves it with its identity."""
    req = client(server, homes, "eval", "request", artifact, "--justification", "evaluation")
    approved = client(
        server,
        homes,
        "lab",
        *("approve", req.stdout.strip(), "-i", str(outside / "lab.agekey")),
        *("--expect-recipient", evaluator),
    )
    return approved.stderr


def test_a_model_directory_under_lab_custody_comes_back_identical(
    server: Server, tmp_path: Path
) -> None:
    age = age_program()
    outside, homes = tmp_path / "outside", tmp_path / "homes"
    outside.mkdir()
    lab, evaluator = setup_keys(server, homes, outside)
    model = write_model(outside / "model", shards=3, shard_bytes=3 * MIB, seed=21)

    pushed = client(server, homes, "lab", *lab_push_args(outside, model, lab, "--json"))
    artifact = json.loads(pushed.stdout)
    assert artifact["custody"] == "lab" and artifact["unchecked"] == ["header-mac", "recipient"]
    listed = sorted(f["path"] for f in artifact["manifest"]["plaintext"]["files"])
    assert listed == sorted(
        p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()
    )
    assert "header SHA-256" in pushed.stderr  # recorded here, for approve -i
    db = sqlite3.connect(server.root / "var" / "gateway.db")
    try:
        (kept,) = db.execute("SELECT header_prefix FROM uploads").fetchone()
        keys = db.execute("SELECT count(*) FROM custody_keys").fetchone()[0]
    finally:
        db.close()
    assert keys == 0  # the gateway holds no key for it
    own = agelib.parse_identities((outside / "lab.agekey").read_text())
    assert len(agelib.unwrap_file_key(agelib.parse_header(bytes(kept)), own)) == 16

    said = approve(server, homes, outside, artifact["id"], evaluator)
    assert evaluator in said and "pinned" in said

    pulled = outside / "pulled"
    done = client(
        server,
        homes,
        "eval",
        *("pull", artifact["id"], "-o", str(pulled), "-i", str(outside / "eval.agekey")),
    )
    assert f"{len(listed)} files" in done.stderr
    same_tree(model, pulled)

    raw = outside / "model.age"
    client(server, homes, "eval", "pull", artifact["id"], "-o", str(raw), "--raw")
    by_age(age, outside / "eval.agekey", raw, outside / "by-age")
    same_tree(model, outside / "by-age")


def test_lab_custody_directory_refusals_are_one_line(server: Server, tmp_path: Path) -> None:
    outside, homes = tmp_path / "outside", tmp_path / "homes"
    outside.mkdir()
    lab, _ = setup_keys(server, homes, outside)
    model = write_model(outside / "model", shards=1, shard_bytes=1000, seed=3)
    (outside / "weights.bin").write_bytes(b"w" * 1000)
    encrypted = client(
        server,
        homes,
        "lab",
        *("push", "--custody", "lab", "--encrypted", str(model)),
        *("-i", str(outside / "lab.agekey"), "--share-with", "agency-a"),
        *("--signing-key", str(outside / "lab.key")),
        check=False,
    )
    assert encrypted.returncode != 0
    assert encrypted.stderr.startswith("gateway: error: --encrypted pushes one file made by age")
    assert len(encrypted.stderr.strip().splitlines()) == 1, encrypted.stderr
    oms = outside / "oms.pem"
    oms.write_text("not used: refused first\n")
    on_file = client(
        server,
        homes,
        "lab",
        *lab_push_args(outside, outside / "weights.bin", lab, "--oms-key", str(oms)),
        check=False,
    )
    assert on_file.returncode != 0
    assert on_file.stderr.startswith("gateway: error: --oms-key signs a directory: give DIR")
    assert not list((homes / "lab").rglob("pushes/*.json"))  # no upload was begun


def test_oms_key_signs_a_lab_custody_directory_and_the_pull_verifies_it(
    server: Server, tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    outside, homes = tmp_path / "outside", tmp_path / "homes"
    outside.mkdir()
    lab, evaluator = setup_keys(server, homes, outside)
    model = write_model(outside / "signed", shards=2, shard_bytes=200_000, seed=9)
    private, public = _ec_keys(outside)
    args = lab_push_args(outside, model, lab, "--oms-key", str(private), "--json")
    artifact = json.loads(client(server, homes, "lab", *args).stdout)
    assert artifact["custody"] == "lab"
    assert "model.sig" in [f["path"] for f in artifact["manifest"]["plaintext"]["files"]]
    approve(server, homes, outside, artifact["id"], evaluator)
    pulled = outside / "pulled"
    done = client(
        server,
        homes,
        "eval",
        *("pull", artifact["id"], "-o", str(pulled), "-i", str(outside / "eval.agekey")),
        *("--oms-key", str(public)),
    )
    assert "model signature: verified by the key given with --oms-key" in done.stderr
    same_tree(model, pulled)


def _wait_for(ready: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_lab_custody_directory_push_killed_midway_resumes(server: Server, tmp_path: Path) -> None:
    outside, homes = tmp_path / "outside", tmp_path / "homes"
    outside.mkdir()
    lab, evaluator = setup_keys(server, homes, outside)
    model = write_model(outside / "big-model", shards=6, shard_bytes=5 * MIB, seed=41)
    args = lab_push_args(outside, model, lab, "--jobs", "1", "--quiet")
    env = {
        **server.env,
        "GATEWAY_URL": server.url,
        "GATEWAY_TOKEN": server.tokens["lab"],
        "XDG_CONFIG_HOME": str(homes / "lab"),
        "GATEWAY_CONFIG": "",
    }
    pushes = homes / "lab" / "gateway" / "pushes"
    proc = subprocess.Popen([str(BIN / "gateway"), *args], env=env, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any(pushes.glob("*.json")))
        upload = json.loads(next(pushes.glob("*.json")).read_text())["upload"]

        def parts() -> int:
            got = requests.get(
                f"{server.url}/v1/uploads/{upload}", headers=server.auth("lab"), timeout=10
            )
            return len(got.json()["parts"])

        _wait_for(lambda: parts() >= 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held, steady = parts(), 0
    while steady < 10:  # two seconds without a new part: nothing is still arriving
        time.sleep(0.2)
        now = parts()
        steady, held = (steady + 1 if now == held else 0), now
    assert 2 <= held < 6, "the push was not interrupted midway"

    done = client(server, homes, "lab", *args, "--json")
    assert f"resuming upload {upload}" in done.stderr
    assert f"parts 1 to {held} are stored" in done.stderr, done.stderr
    artifact = json.loads(done.stdout)
    assert artifact["manifest"]["upload"] == upload and artifact["custody"] == "lab"
    assert not list(pushes.glob("*.json")), "the push state (with the file key) is gone"

    # approved with no --header-sha256: the resumed push recorded the header it sent
    approve(server, homes, outside, artifact["id"], evaluator)
    pulled = outside / "pulled"
    client(
        server,
        homes,
        "eval",
        *("pull", artifact["id"], "-o", str(pulled), "-i", str(outside / "eval.agekey")),
    )
    same_tree(model, pulled)
