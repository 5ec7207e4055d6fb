"""Model directories through the real ``gateway`` command against a real ``gateway serve``.

The model is written with the ``safetensors`` package: several shards, the index that
maps each tensor to its shard, a config, and tokenizer files in a subfolder. It is
pushed as a directory and restored by ``gateway pull -o DIR`` and by the standard tools
(``gateway pull --raw``, then ``age -d | tar -x``), each ``diff -r`` identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.client.http import Api
from tests.client.dirlab import member, tar_of, upload_by_hand
from tests.harness import ORGS, LocalGateway, cli, gateway_command
from tests.tools import require_tool

safetensors_numpy = pytest.importorskip("safetensors.numpy")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIB = 1 << 20


@pytest.fixture(scope="module")
def gw() -> Iterator[LocalGateway]:
    with LocalGateway(part_mib=5) as running:
        yield running


@pytest.fixture(scope="module")
def keys(gw: LocalGateway) -> dict[str, Path]:
    signing = gw.root / "lab.key"
    identity = gw.root / "eve.agekey"
    cli(gw.env("lab"), "keygen", "--type", "signing", "-o", str(signing))
    cli(gw.env("evaluator"), "keygen", "--type", "age", "-o", str(identity))
    return {"signing": signing, "identity": identity}


def write_model(root: Path, shards: int = 4, shard_mib: float = 3.0, seed: int = 7) -> Path:
    """A sharded safetensors model with its index, config and tokenizer folder."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    weight_map: dict[str, str] = {}
    total = 0
    cols = max(1, int(shard_mib * MIB / 4 / 512))
    for shard in range(1, shards + 1):
        name = f"model-{shard:05d}-of-{shards:05d}.safetensors"
        part = {
            f"layers.{shard}.mlp.weight": rng.standard_normal((512, cols), dtype=np.float32),
            f"layers.{shard}.norm": rng.standard_normal((cols,), dtype=np.float32),
        }
        safetensors_numpy.save_file(part, str(root / name), metadata={"format": "np"})
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.nbytes for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 512}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer/tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}))
    (root / "tokenizer/tokenizer_config.json").write_text('{"bos_token": "<s>"}')
    (root / "tokenizer/empty.txt").write_text("")
    return root


def push_args(keys: dict[str, Path], path: Path, *extra: str) -> list[str]:
    return [
        *("push", str(path), "--name", path.name, "--share-with", ORGS["evaluator"][0]),
        *("--signing-key", str(keys["signing"]), *extra),
    ]


def grant(gw: LocalGateway, artifact: str) -> None:
    request = cli(gw.env("evaluator"), "request", artifact, "--justification", "test", "--json")
    cli(gw.env("lab"), "approve", json.loads(request.stdout)["id"])


def same_tree(a: Path, b: Path) -> None:
    done = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def listing(root: Path) -> list[tuple[str, int]]:
    return sorted(
        (p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*") if p.is_file()
    )


def by_age(keys: dict[str, Path], raw: Path, dest: Path) -> None:
    """``age -d -i KEY FILE | tar -x -C DEST``, the standard tools only."""
    dest.mkdir()
    age = subprocess.Popen(
        [require_tool("age"), "-d", "-i", str(keys["identity"]), str(raw)],
        stdout=subprocess.PIPE,
    )
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=age.stdout, check=False)
    assert age.wait() == 0 and tar.returncode == 0


def test_a_directory_pushed_is_pulled_back_identical_by_gateway_and_by_age_and_tar(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    done = cli(gw.env("lab"), *push_args(keys, model, "--json"))
    artifact = json.loads(done.stdout)
    manifest = artifact["manifest"]
    assert manifest["version"] == 2 and set(manifest["plaintext"]) == {"size", "archive", "files"}
    listed = [(f["path"], f["size"]) for f in manifest["plaintext"]["files"]]
    (model / ".git" / "HEAD").unlink()
    (model / ".git").rmdir()
    assert sorted(listed) == listing(model), "every file, with its size; .git left out"
    assert artifact["size"] > sum(size for _, size in listed) > 12 * MIB

    grant(gw, artifact["id"])
    out = tmp_path / "pulled"
    env = gw.env("evaluator")
    done = cli(env, "pull", artifact["id"], "-o", str(out), "-i", str(keys["identity"]))
    assert f"{len(listed)} files" in done.stderr.decode()
    same_tree(model, out)
    assert not (out / ".gateway-incoming").exists()
    again = cli(
        env, "pull", artifact["id"], "-o", str(out), "-i", str(keys["identity"]), check=False
    )
    assert again.returncode != 0 and "not empty" in again.stderr.decode()

    raw = tmp_path / "model.age"
    cli(gw.env("evaluator"), "pull", artifact["id"], "-o", str(raw), "--raw")
    by_age(keys, raw, tmp_path / "by-age")
    same_tree(model, tmp_path / "by-age")


def test_a_directory_with_a_symlink_is_refused_naming_it(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model", shards=1, shard_mib=0.1)
    (model / "latest").symlink_to("config.json")
    done = cli(gw.env("lab"), *push_args(keys, model), check=False)
    err = done.stderr.decode()
    assert done.returncode != 0 and err.startswith("gateway: error: ") and "latest" in err
    assert "Traceback" not in err


def _snapshot(root: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_file():
            out[rel] = ("file", path.read_bytes().hex())
        else:
            out[rel] = ("other", "")
    return out


HOSTILE = {
    "traversal": ([member("../outside/evil", b"x")], [("../outside/evil", b"x")], "evil"),
    "absolute": ([member("{outside}/abs", b"x")], [("{outside}/abs", b"x")], "abs"),
    "symlink": (
        [member("a", b"a"), member("link", kind=tarfile.SYMTYPE, linkname="{outside}/target")],
        [("a", b"a")],
        "link",
    ),
    "hard link": (
        [member("a", b"a"), member("hard", kind=tarfile.LNKTYPE, linkname="a")],
        [("a", b"a")],
        "hard",
    ),
    "device": (
        [member("a", b"a"), member("null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)],
        [("a", b"a")],
        "null",
    ),
    "duplicate": ([member("a", b"one"), member("a", b"two")], [("a", b"one")], "a"),
    # Large enough that the decryption is still writing when the extractor refuses.
    "larger than its entry": ([member("big", b"x" * 16 * MIB)], [("big", b"x" * 1000)], "big"),
    "content not the signed one": (
        [member("w.bin", b"tampered")],
        [("w.bin", b"original")],
        "w.bin",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_by_pull_with_nothing_written_outside_dir(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"precious")
    members, claims, named = HOSTILE[case]
    fill = {"outside": str(outside)}
    built = []
    for info, data in members:
        info.name = info.name.format(**fill)
        info.linkname = info.linkname.format(**fill)
        built.append((info, data))
    claimed = [(path.format(**fill), data) for path, data in claims]
    artifact = upload_by_hand(gw, keys["signing"], f"hostile-{case}", tar_of(built), claimed)
    grant(gw, artifact)
    before = _snapshot(tmp_path)
    dest = tmp_path / "dest"
    done = cli(
        gw.env("evaluator"),
        "pull",
        artifact,
        "-o",
        str(dest),
        "-i",
        str(keys["identity"]),
        check=False,
    )
    err = done.stderr.decode()
    said = [line for line in err.splitlines() if not line.startswith("gateway: note: ")]
    assert done.returncode != 0 and said[0].startswith("gateway: error: "), err
    assert named in err and "Traceback" not in err, err
    after = {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith("dest")}
    assert after == before, "nothing outside DIR may change"
    left = [p.relative_to(dest).as_posix() for p in dest.rglob("*")] if dest.exists() else []
    if case == "duplicate":  # the first "a" was verified; the second never replaces it
        assert (dest / "a").read_bytes() == b"one"
    else:
        assert named not in left, "the refused member has no name in DIR"
    assert all(p == "a" or p.startswith(".gateway-incoming") for p in left), left


def _wait_for(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_directory_push_killed_midway_and_a_pull_killed_midway_both_resume(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    model = write_model(tmp_path / "big-model", shards=8, shard_mib=8, seed=11)
    env = gw.env("lab")
    pushes = Path(env["XDG_CONFIG_HOME"]) / "gateway" / "pushes"
    args = push_args(keys, model, "--jobs", "1")
    proc = subprocess.Popen([*gateway_command(), *args], env=env, stderr=subprocess.PIPE)
    _wait_for(lambda: any(pushes.glob("*.json")))
    upload = json.loads(next(pushes.glob("*.json")).read_text())["upload"]
    api = Api(gw.url, gw.tokens["lab"])

    def parts() -> int:
        return len(api.get(f"/v1/uploads/{upload}")["parts"])

    _wait_for(lambda: parts() >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a part whose body had all arrived is still stored after the kill: wait until none is
    held, steady = parts(), 0
    for _ in range(100):
        time.sleep(0.2)
        now = parts()
        steady = steady + 1 if now == held else 0
        held = now
        if steady == 10:  # two seconds without a new part
            break
    assert 3 <= held < 13, "the push was not interrupted midway"
    done = cli(env, *args, "--json")
    said = done.stderr.decode()
    assert f"resuming upload {upload}" in said
    # The files before the first part the gateway lacks are not read again.
    assert f"parts 1 to {held} are stored: reading the tree from part {held + 1} on" in said, said
    artifact = json.loads(done.stdout)
    assert artifact["manifest"]["upload"] == upload
    assert not list(pushes.glob("*.json")), "the push state (with the file key) is gone"

    grant(gw, artifact["id"])
    out = tmp_path / "pulled"
    pull = ["pull", artifact["id"], "-o", str(out), "-i", str(keys["identity"])]
    journal = out / ".gateway-incoming" / "journal"
    proc = subprocess.Popen([*gateway_command(), *pull], env=gw.env("evaluator"))
    _wait_for(lambda: journal.is_file() and journal.read_bytes().count(b"\n") >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = journal.read_bytes().count(b"\n") - 1
    assert 1 <= kept < 8, "the pull was not interrupted midway"
    done = cli(gw.env("evaluator"), *pull)
    assert "resuming" in done.stderr.decode()
    same_tree(model, out)
    assert not (out / ".gateway-incoming").exists()


def _ec_keys(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / "oms.pem", tmp_path / "oms.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_push_oms_key_signs_and_pull_oms_key_verifies_and_names_a_tampered_shard(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    private, public = _ec_keys(tmp_path)
    model = write_model(tmp_path / "signed", shards=3, shard_mib=0.5, seed=5)
    done = cli(gw.env("lab"), *push_args(keys, model, "--oms-key", str(private), "--json"))
    artifact = json.loads(done.stdout)
    assert "model.sig" in [f["path"] for f in artifact["manifest"]["plaintext"]["files"]]
    grant(gw, artifact["id"])
    out = tmp_path / "pulled"
    env, identity = gw.env("evaluator"), str(keys["identity"])
    done = cli(
        env, "pull", artifact["id"], "-o", str(out), "-i", identity, "--oms-key", str(public)
    )
    assert "model signature: verified by the key given with --oms-key" in done.stderr.decode()
    same_tree(model, out)

    shard = "model-00002-of-00003.safetensors"
    (model / shard).write_bytes(b"\x03" * 4000)  # changed after signing; the manifest follows
    tampered = json.loads(cli(gw.env("lab"), *push_args(keys, model, "--json")).stdout)
    grant(gw, tampered["id"])
    out = tmp_path / "tampered"
    args = ["pull", tampered["id"], "-o", str(out), "-i", identity]
    done = cli(env, *args, "--oms-key", str(public), check=False)
    err = done.stderr.decode()
    assert done.returncode != 0 and err.startswith("gateway: error: model signature: FAILED")
    assert f"{shard} differs" in err, err


def _fingerprint(public: Path) -> str:
    key = serialization.load_pem_public_key(public.read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def test_pull_checks_model_sig_under_the_key_the_lab_registered(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    private, public = _ec_keys(tmp_path)
    model = write_model(tmp_path / "signed", shards=3, shard_mib=0.5, seed=11)
    done = cli(gw.env("lab"), *push_args(keys, model, "--oms-key", str(private), "--json"))
    signed = json.loads(done.stdout)
    grant(gw, signed["id"])
    env, identity = gw.env("evaluator"), str(keys["identity"])

    # Before the lab registers a key: restored, the signature said to be unchecked.
    out = tmp_path / "unchecked"
    done = cli(env, "pull", signed["id"], "-o", str(out), "-i", identity)
    assert "model signature: none registered: not checked" in done.stderr.decode()
    same_tree(model, out)

    # A key that did not sign it, then the one that did: the pull tries each.
    (tmp_path / "other").mkdir()
    _, other = _ec_keys(tmp_path / "other")
    cli(gw.env("lab"), "oms-key", "register", str(other))
    done = cli(gw.env("lab"), "oms-key", "register", str(public))
    assert _fingerprint(public) in done.stderr.decode()
    out = tmp_path / "verified"
    done = cli(env, "pull", signed["id"], "-o", str(out), "-i", identity)
    said = done.stderr.decode()
    assert f"model signature: verified by the key the lab registered {_fingerprint(public)}" in said
    same_tree(model, out)

    # Changed after signing, pushed with a manifest that follows: the signature names it.
    shard = "model-00003-of-00003.safetensors"
    (model / shard).write_bytes(b"\x05" * 5000)
    tampered = json.loads(cli(gw.env("lab"), *push_args(keys, model, "--json")).stdout)
    grant(gw, tampered["id"])
    out = tmp_path / "tampered"
    done = cli(env, "pull", tampered["id"], "-o", str(out), "-i", identity, check=False)
    err = done.stderr.decode()
    assert done.returncode != 0 and err.startswith("gateway: error: model signature: FAILED"), err
    assert f"{shard} differs" in err, err

    # --oms-key overrides what the lab registered: a key that did not sign it fails.
    out = tmp_path / "overridden"
    args = ["pull", signed["id"], "-o", str(out), "-i", identity, "--oms-key", str(other)]
    done = cli(env, *args, check=False)
    err = done.stderr.decode()
    assert done.returncode != 0 and "FAILED under the key given with --oms-key" in err, err
