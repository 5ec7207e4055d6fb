"""The distribution as users get it: a wheel built from a clean clone, in two fresh installs.

The server install (``[server]``) runs ``gateway init`` on the S3 backend (a real
``moto_server``), which provisions both buckets with the bucket policy shipped inside
the package, then ``gateway serve``; the client-only install (the base install, no
Flask, SQLAlchemy or boto3) pushes a file to it and pulls it back, byte for byte, and
answers an operator command by naming the extra to install. Nothing from the checkout
is on either install's path: the venvs are made without system site-packages and run
from a directory of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

from tests.harness import free_port
from tests.storage.conftest import moto_server  # noqa: F401 - the fixture, shared
from tests.tools import missing, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = "model-artifact-gateway"
BUCKET, AUDIT_BUCKET = "packaging-artifacts", "packaging-audit"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}: {done.stderr[-3000:]}"
    return done.stdout.strip()


def _wheel(work: Path) -> Path:
    """A wheel of the checkout's current commit, built from a clean clone of it."""
    git = require_tool("git")
    try:
        commit = _run(git, "rev-parse", "HEAD", cwd=ROOT)
    except AssertionError:
        missing(f"{ROOT} is not a git checkout: no commit to build a wheel of")
    source = work / "source"
    _run(git, "clone", "--quiet", "--no-checkout", ROOT, source, cwd=work)
    _run(git, "checkout", "--quiet", commit, cwd=source)
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work, source, cwd=work)
    (wheel,) = work.glob("model_artifact_gateway-*.whl")
    return wheel


def _installs(work: Path, wheel: Path) -> dict[str, Path]:
    """Two fresh venvs (no system site-packages): the server flavour and the client alone."""
    flavours = {"server": f"{wheel}[server]", "client": str(wheel)}
    installing = []
    for name, requirement in flavours.items():
        venv = work / name
        _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
        argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
        installing.append(
            subprocess.Popen(
                [*argv, "install", "--quiet", requirement],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in installing:  # the two installs run side by side
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    return {name: work / name / "bin" for name in flavours}


@dataclass
class Deployed:
    url: str
    tokens: dict[str, str]
    client: Path  # the client-only install's bin directory
    home: Path


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: str,  # noqa: F811 - the imported fixture
) -> Iterator[Deployed]:
    work = tmp_path_factory.mktemp("packaging")
    bins = _installs(work, _wheel(work))
    run_dir = work / "run"
    run_dir.mkdir()
    env = _server_env(work, run_dir, moto_server)
    server = bins["server"] / "gateway"
    tokens = _set_up(server, run_dir, env, moto_server)
    port = free_port()
    with open(run_dir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(server), "serve", "--port", str(port)],
            cwd=run_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, run_dir / "server.log")
            yield Deployed(url, tokens, bins["client"], work)
        finally:
            _stop(process)


def _server_env(work: Path, run_dir: Path, endpoint: str) -> dict[str, str]:
    """The server install's environment: a configuration on S3 at ``endpoint``, nothing else."""
    (run_dir / "gateway.toml").write_text(
        f'[database]\nurl = "sqlite:///{run_dir / "gateway.db"}"\n'
        f'[keys]\ndir = "{run_dir / "keys"}"\n'
        f'[storage]\nbackend = "s3"\nendpoint_url = "{endpoint}"\nallow_insecure_endpoint = true\n'
        f'bucket = "{BUCKET}"\naudit_bucket = "{AUDIT_BUCKET}"\n'
        "[uploads]\nmin_part_size_mib = 5\ndefault_part_size_mib = 5\n"
        "[sweeper]\ninterval_seconds = 0\n"
    )
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "GATEWAY_CONFIG": str(run_dir / "gateway.toml"),
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        **AWS,
    }


def _set_up(server: Path, run_dir: Path, env: dict[str, str], endpoint: str) -> dict[str, str]:
    """``gateway init`` on S3, a lab and an agency; a token for each, by role."""
    _run(server, "init", cwd=run_dir, env=env)
    _check_provisioned_and_open_for_moto(endpoint)
    for org, kind in (("lab-a", "lab"), ("agency-a", "agency")):
        _run(server, "admin", "org", "create", org, "--kind", kind, cwd=run_dir, env=env)
    return {
        role: _run(
            *(server, "admin", "token", "create", "--org", org, "--role", role, "--name", name),
            cwd=run_dir,
            env=env,
        )
        for role, org, name in (("lab", "lab-a", "ann"), ("evaluator", "agency-a", "eve"))
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``gateway serve`` and its workers (its whole process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _check_provisioned_and_open_for_moto(endpoint: str) -> None:
    """The packaged policy is on both buckets; then removed, since moto cannot evaluate it.

    moto treats the policy's conditional Deny statements (``aws:SecureTransport``,
    ``aws:PrincipalArn``) as unconditional, so the gateway could not use its own buckets;
    real S3 evaluates the conditions (tests/storage/test_provision.py reads them back).
    """
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys())
    for bucket in (BUCKET, AUDIT_BUCKET):
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        sids = {statement["Sid"] for statement in policy["Statement"]}
        # moto's endpoint is http: the setting leaves the TLS condition out of the policy
        assert sids == {"DenyEveryoneButTheGateway"}, policy
        s3.delete_bucket_policy(Bucket=bucket)


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
    }


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway serve exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway serve did not become ready: {log.read_text()[-3000:]}")


def _client(
    deployed: Deployed, role: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    home = deployed.home / "home" / role
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GATEWAY_URL": deployed.url,
        "GATEWAY_TOKEN": deployed.tokens[role],
    }
    done = subprocess.run(
        [str(deployed.client / "gateway"), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"gateway {' '.join(args)}: {done.stderr}"
    return done


def test_the_client_install_has_no_server_stack(deployed: Deployed) -> None:
    python = deployed.client / "python"
    for module in ("flask", "sqlalchemy", "boto3", "gunicorn", "alembic"):
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, check=False
        )
        assert probe.returncode != 0, f"{module} is installed with the client alone"
    done = _client(deployed, "lab", "init", check=False)
    assert done.returncode == 1
    assert done.stderr == (
        f"gateway: error: `gateway init` needs the server install: "
        f"pip install '{DISTRIBUTION}[server]'\n"
    )


def test_the_client_install_pushes_and_pulls_against_the_server_install(
    deployed: Deployed,
) -> None:
    home = deployed.home / "home"
    _client(deployed, "lab", "keygen", "--type", "signing", "-o", str(home / "lab.key"))
    _client(deployed, "evaluator", "keygen", "--type", "age", "-o", str(home / "eve.agekey"))
    weights = home / "weights.bin"
    weights.write_bytes(os.urandom(6 * (1 << 20) + 123))  # two parts of 5 MiB on S3
    pushed = _client(
        deployed,
        "lab",
        *("push", str(weights), "--share-with", "agency-a"),
        *("--signing-key", str(home / "lab.key"), "--json"),
    )
    artifact = json.loads(pushed.stdout)["id"]
    asked = _client(
        deployed, "evaluator", "request", artifact, "--justification", "packaging", "--json"
    )
    _client(deployed, "lab", "approve", json.loads(asked.stdout)["id"])
    out = home / "pulled.bin"
    _client(deployed, "evaluator", "pull", artifact, "-o", str(out), "-i", str(home / "eve.agekey"))
    assert out.read_bytes() == weights.read_bytes()
