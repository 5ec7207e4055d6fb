"""The custody backends under a real ``gateway serve``: AWS KMS (moto as a server) and an HSM (SoftHSM2).

Each story is the production shape: ``gateway init`` prepares the backend, ``gateway
serve`` (gunicorn workers, forked) keeps every upload's custody identity wrapped in it,
and the real client pushes, requests, approves, pulls and checks the plaintext; then the
lab withdraws. For KMS, moto's own record of the requests it received (its recorder)
shows every ``Decrypt`` carrying the upload, artifact and organisation as the encryption
context, and the artifact's KMS key is disabled and pending deletion after the
withdrawal. For the HSM, the artifact's key object is in the token while it lives and
gone from it after the withdrawal (listed by a separate process with python-pkcs11).
Either way a further pull is refused. An unreachable backend is one line from ``init``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import helpers
from tests.custody.conftest import KmsServer, kms_server, softhsm
from tests.custody.hsm import SoftHsm
from tests.e2e.conftest import BIN, Server, free_port, start_server, stop_server

__all__ = ["kms_server", "softhsm"]  # the custody tests' fixtures: moto server, SoftHSM2 token

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
KIB = 1 << 10
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PIN_ENV = "GATEWAY_E2E_PKCS11_PIN"


def client(
    server: Server, who: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The real ``gateway`` client as ``who`` (its own config directory)."""
    home = server.root / "home" / who
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GATEWAY_URL": server.url,
        "GATEWAY_TOKEN": server.tokens[who],
        "XDG_CONFIG_HOME": str(home),
        "GATEWAY_CONFIG": "",
    }
    return subprocess.run(
        [str(BIN / "gateway"), *args],
        env=env,
        cwd=server.root,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def story(server: Server, work: Path) -> tuple[str, bytes]:
    """Push, request, approve, pull: the artifact's id and what was pulled, checked."""
    plaintext = helpers.random_bytes(96 * KIB + 7, seed=21)
    (work / "weights.bin").write_bytes(plaintext)
    client(server, "lab", "keygen", "--type", "signing", "-o", str(work / "lab.key"))
    artifact = client(
        server,
        "lab",
        *("push", str(work / "weights.bin"), "--name", "weights", "--kind", "weights"),
        *("--share-with", "agency-a", "--signing-key", str(work / "lab.key")),
    ).stdout.strip()
    client(server, "eval", "keygen", "--type", "age", "-o", str(work / "eval.agekey"))
    asked = client(server, "eval", "request", artifact, "--justification", "evaluation")
    client(server, "lab", "approve", asked.stdout.strip(), "--hours", "24")
    pull(server, work, artifact)
    assert (work / "out.bin").read_bytes() == plaintext
    return artifact, plaintext


def pull(server: Server, work: Path, artifact: str, *, check: bool = True) -> Any:
    out = work / "out.bin"
    out.unlink(missing_ok=True)
    return client(
        server,
        "eval",
        *("pull", artifact, "-o", str(out), "-i", str(work / "eval.agekey")),
        check=check,
    )


def withdraw_and_refuse(server: Server, work: Path, artifact: str) -> None:
    client(server, "lab", "withdraw", artifact, "--yes")
    refused = pull(server, work, artifact, check=False)
    assert refused.returncode != 0
    assert refused.stderr.startswith("gateway: error: "), refused.stderr
    assert "withdrawn" in refused.stderr and "Traceback" not in refused.stderr
    assert not (work / "out.bin").exists()


# --- aws-kms -----------------------------------------------------------------------------


def kms_env(url: str) -> dict[str, str]:
    return {
        **AWS,
        "GATEWAY_CUSTODY_BACKEND": "aws-kms",
        "GATEWAY_CUSTODY_KMS_ENDPOINT_URL": url,
        "GATEWAY_CUSTODY_KMS_MAX_ATTEMPTS": "1",
        "GATEWAY_CUSTODY_KMS_TIMEOUT_SECONDS": "5",
    }


def recorded_decrypts(server: KmsServer) -> list[dict[str, Any]]:
    """The bodies of the ``Decrypt`` requests moto server received while recording."""
    bodies = []
    for line in server.moto_api("download-recording").decode().splitlines():
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        if headers.get("x-amz-target") != "TrentService.Decrypt":
            continue
        body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"]
        bodies.append(json.loads(body))
    return bodies


def test_kms_custody_under_gateway_serve(kms_server: KmsServer, tmp_path: Path) -> None:
    kms_server.moto_api("reset-recording")
    kms_server.moto_api("start-recording")
    server = start_server(tmp_path, kms_env(kms_server.url))
    try:
        init = server.gateway("init")
        assert (
            f"gateway: custody ready (aws-kms: a key per artifact in {kms_server.url})"
            in init.stderr
        )
        artifact, _ = story(server, tmp_path)
        kms_server.moto_api("stop-recording")
        decrypts = recorded_decrypts(kms_server)
        # one unwrap at completion (the header check), one at the key release
        assert len(decrypts) == 2, decrypts
        contexts = [d["EncryptionContext"] for d in decrypts]
        assert contexts[0] == contexts[1]
        context = contexts[0]
        assert context["artifact"] == artifact and context["org"] == "lab-a"
        assert context["upload"].startswith("up_") and set(context) == {"upload", "artifact", "org"}

        withdraw_and_refuse(server, tmp_path, artifact)
        kms = boto3.client(
            "kms",
            region_name="us-east-1",
            endpoint_url=kms_server.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        alias = "alias/gateway-custody/" + context["upload"].replace(".", "/")
        meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
        assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    finally:
        stop_server(server)
        kms_server.moto_api("stop-recording")


def test_init_with_an_unreachable_kms_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "gateway.toml").write_text('[database]\nurl = "sqlite:///var/gateway.db"\n')
    env = {
        **os.environ,
        **kms_env(url),
        "GATEWAY_CONFIG": str(tmp_path / "gateway.toml"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    done = subprocess.run(
        [str(BIN / "gateway"), "init"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("gateway: error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("gateway: error: the custody backend aws-kms is not usable: ")
    assert "Traceback" not in done.stderr


# --- pkcs11 ------------------------------------------------------------------------------


def token_labels(hsm: SoftHsm, prefix: str) -> list[str]:
    """The labels of the token's secret keys that start with ``prefix``, listed by another process."""
    return hsm.secret_labels(prefix)


def test_hsm_custody_under_gateway_serve(softhsm: SoftHsm, tmp_path: Path) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}:"
    env = {
        "SOFTHSM2_CONF": str(softhsm.conf),
        "GATEWAY_CUSTODY_BACKEND": "pkcs11",
        "GATEWAY_CUSTODY_PKCS11_MODULE": softhsm.module,
        "GATEWAY_CUSTODY_PKCS11_TOKEN_LABEL": softhsm.token,
        "GATEWAY_CUSTODY_PKCS11_PIN_ENV": PIN_ENV,
        "GATEWAY_CUSTODY_PKCS11_KEY_LABEL_PREFIX": prefix,
        PIN_ENV: softhsm.pin,
    }
    server = start_server(tmp_path, env)
    try:
        init = server.gateway("init")
        assert f"gateway: custody ready (pkcs11: token {softhsm.token!r} through " in init.stderr
        artifact, _ = story(server, tmp_path)
        labels = token_labels(softhsm, prefix)
        assert len(labels) == 1 and labels[0].startswith(prefix + "up_"), labels

        withdraw_and_refuse(server, tmp_path, artifact)
        assert token_labels(softhsm, prefix) == []  # the key object is gone from the token
    finally:
        stop_server(server)


def test_init_with_a_wrong_pin_is_one_line(softhsm: SoftHsm, tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('[database]\nurl = "sqlite:///var/gateway.db"\n')
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(tmp_path / "gateway.toml"),
        "SOFTHSM2_CONF": str(softhsm.conf),
        "GATEWAY_CUSTODY_BACKEND": "pkcs11",
        "GATEWAY_CUSTODY_PKCS11_MODULE": softhsm.module,
        "GATEWAY_CUSTODY_PKCS11_TOKEN_LABEL": softhsm.pin_token,
        "GATEWAY_CUSTODY_PKCS11_PIN_ENV": PIN_ENV,
        PIN_ENV: "0000" + softhsm.pin_token_pin,  # not the token's PIN
    }
    done = subprocess.run(
        [str(BIN / "gateway"), "init"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("gateway: error:")]
    assert errors == [
        f"gateway: error: the custody backend pkcs11 is not usable: cannot open token "
        f"{softhsm.pin_token} with {softhsm.module}: PinIncorrect"
    ], done.stderr
    assert softhsm.pin_token_pin not in done.stderr + done.stdout
