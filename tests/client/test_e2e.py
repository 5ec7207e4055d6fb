"""The real ``gateway`` command against a real ``gateway serve``: push, pull, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import ORGS, LocalGateway, cli, gateway_command, sha256_file, write_weights
from tests.tools import require_tool

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


def _push(gw: LocalGateway, keys: dict[str, Path], path: Path, *extra: str) -> list[str]:
    return [
        "push",
        str(path),
        "--name",
        path.name,
        "--share-with",
        ORGS["evaluator"][0],
        "--signing-key",
        str(keys["signing"]),
        *extra,
    ]


def _grant(gw: LocalGateway, artifact: str) -> None:
    request = cli(gw.env("evaluator"), "request", artifact, "--justification", "test", "--json")
    cli(gw.env("lab"), "approve", json.loads(request.stdout)["id"])


def _wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_errors_are_one_line_and_fail(gw: LocalGateway, tmp_path: Path) -> None:
    done = cli(
        gw.env("evaluator"),
        *("pull", "art_does_not_exist", "-o", str(tmp_path / "x"), "--raw"),
        check=False,
    )
    assert done.returncode != 0
    err = done.stderr.decode()
    assert err.startswith("gateway: error: ") and "Traceback" not in err and err.count("\n") == 1
    bad = {**gw.env("lab"), "GATEWAY_TOKEN": "gw_not_a_token"}
    done = cli(bad, "whoami", check=False)
    assert done.returncode != 0 and done.stderr.decode().startswith("gateway: error: ")
    assert "Traceback" not in done.stderr.decode()


def test_profile_and_whoami(gw: LocalGateway, tmp_path: Path) -> None:
    env = {k: v for k, v in gw.env("auditor").items() if k not in ("GATEWAY_URL", "GATEWAY_TOKEN")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    cli(
        env, "profile", "set", "audit", "--url", gw.url, stdin=gw.tokens["auditor"].encode() + b"\n"
    )
    assert (tmp_path / "gateway" / "profiles.toml").stat().st_mode & 0o777 == 0o600
    me = json.loads(cli(env, "whoami", "--profile", "audit", "--json").stdout)
    assert (me["role"], me["org"]) == ("auditor", ORGS["auditor"][0])


def test_push_killed_midway_resumes_and_pulls_back_identical(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    digest = write_weights(weights, 200 * MIB + 12345, seed=b"push-resume")
    env = gw.env("lab")
    pushes = Path(env["XDG_CONFIG_HOME"]) / "gateway" / "pushes"
    proc = subprocess.Popen(
        [*gateway_command(), *_push(gw, keys, weights, "--jobs", "1")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(lambda: any(pushes.glob("*.json")))
    upload = json.loads(next(pushes.glob("*.json")).read_text())["upload"]
    headers = {"Authorization": f"Bearer {gw.tokens['lab']}"}

    def parts() -> int:
        return len(
            requests.get(f"{gw.url}/v1/uploads/{upload}", headers=headers, timeout=10).json()[
                "parts"
            ]
        )

    _wait_for(lambda: parts() >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    held = parts()
    assert 3 <= held < 41, "the push was not interrupted midway"

    done = cli(env, *_push(gw, keys, weights, "--json"))
    assert f"resuming upload {upload}" in done.stderr.decode()
    artifact = json.loads(done.stdout)
    assert artifact["manifest"]["upload"] == upload
    assert artifact["manifest"]["plaintext"]["sha256"] == digest
    assert not list(pushes.glob("*.json")), "the state file (with the file key) must be gone"

    _grant(gw, artifact["id"])
    out = tmp_path / "pulled.bin"
    cli(
        gw.env("evaluator"),
        "pull",
        artifact["id"],
        "-o",
        str(out),
        "--identity",
        str(keys["identity"]),
    )
    assert sha256_file(out) == digest and out.stat().st_size == weights.stat().st_size


def test_pull_interrupted_resumes_to_an_identical_file(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    digest = write_weights(weights, 300 * MIB + 777, seed=b"pull-resume")
    artifact = json.loads(cli(gw.env("lab"), *_push(gw, keys, weights, "--json")).stdout)
    _grant(gw, artifact["id"])
    out = tmp_path / "pulled.bin"
    partial = tmp_path / "pulled.bin.part"
    env = gw.env("evaluator")
    args = ["pull", artifact["id"], "-o", str(out), "--identity", str(keys["identity"])]
    proc = subprocess.Popen(
        [*gateway_command(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for(lambda: partial.exists() and partial.stat().st_size > 20 * MIB)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "no plaintext at the output name before it is verified"
    kept = partial.stat().st_size
    assert 20 * MIB < kept < weights.stat().st_size
    assert partial.stat().st_mode & 0o777 == 0o600

    cli(env, *args)
    assert sha256_file(out) == digest and not partial.exists()
    raw = tmp_path / "raw.age"
    cli(env, "pull", artifact["id"], "-o", str(raw), "--raw")
    age = subprocess.run(
        [
            require_tool("age"),
            "-d",
            "-i",
            str(keys["identity"]),
            "-o",
            str(tmp_path / "by-age.bin"),
            str(raw),
        ],
        capture_output=True,
        check=False,
    )
    assert age.returncode == 0, age.stderr
    assert sha256_file(tmp_path / "by-age.bin") == digest
    os.unlink(raw)
