"""The S3 profile as a newcomer tries it: `gateway init` and `gateway serve` on moto server over HTTP.

moto server is an S3-compatible endpoint without TLS, as a lab's MinIO often is. The
gateway is configured from the README alone: ``backend = "s3"``, the endpoint, and
``allow_insecure_endpoint = true``; since moto evaluates no condition of a bucket policy
(it treats every ``Deny`` to ``*`` as absolute), the README's policy for such stores is
given as ``policy_template``. Then the whole story runs with the real client: push,
request, approve, pull (decrypted and checked, and raw for the real ``age``), and the
auditor's offline verification; the ciphertext is in the bucket, not on the disk.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests import helpers
from tests.e2e.conftest import BIN, Server, age_program, start_server, stop_server
from tests.storage.conftest import moto_server  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20

STORE_POLICY = {
    # The README's policy for an S3-compatible store that evaluates no conditions.
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowTheGateway",
            "Effect": "Allow",
            "Principal": {"AWS": "${gateway_principal_arns}"},
            "Action": "s3:*",
            "Resource": ["${bucket_arn}", "${bucket_arn}/*"],
        }
    ],
}
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Gateway:
    server: Server
    endpoint: str
    bucket: str

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_keys())

    def client(self, who: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The ``gateway`` client acting as ``who`` (its own config directory)."""
        home = self.server.root / "home" / who
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GATEWAY_URL": self.server.url,
            "GATEWAY_TOKEN": self.server.tokens[who],
            "XDG_CONFIG_HOME": str(home),
            "GATEWAY_CONFIG": "",
        }
        return subprocess.run(
            [str(BIN / "gateway"), *args],
            env=env,
            cwd=self.server.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
    }


def s3_env(root: Path, endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    """The README's S3 profile for a store without TLS, as environment overrides."""
    policy = root / "store-policy.json"
    policy.write_text(json.dumps(STORE_POLICY))
    return {
        **AWS,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "GATEWAY_STORAGE_BACKEND": "s3",
        "GATEWAY_STORAGE_ENDPOINT_URL": endpoint,
        "GATEWAY_STORAGE_ALLOW_INSECURE_ENDPOINT": "true",
        "GATEWAY_STORAGE_POLICY_TEMPLATE": str(policy),
        "GATEWAY_STORAGE_BUCKET": bucket,
        "GATEWAY_STORAGE_AUDIT_BUCKET": f"{bucket}-audit",
        **extra,
    }


@pytest.fixture
def s3_gateway(
    tmp_path: Path,
    moto_server: str,  # noqa: F811 - the imported fixture
) -> Iterator[S3Gateway]:
    bucket = f"story-{uuid.uuid4().hex[:12]}"
    server = start_server(tmp_path, s3_env(tmp_path, moto_server, bucket))
    try:
        yield S3Gateway(server, moto_server, bucket)
    finally:
        stop_server(server)


def test_init_refuses_an_endpoint_without_tls_in_one_line(
    tmp_path: Path,
    moto_server: str,  # noqa: F811 - the imported fixture
) -> None:
    bucket = f"refused-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        **s3_env(tmp_path, moto_server, bucket),
        "GATEWAY_CONFIG": "",
        "GATEWAY_STORAGE_ALLOW_INSECURE_ENDPOINT": "false",
        "GATEWAY_STORAGE_POLICY_TEMPLATE": "",  # the packaged, TLS-only policy
        "GATEWAY_KEYS_DIR": str(tmp_path / "keys"),
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
    }
    done = subprocess.run(
        [str(BIN / "gateway"), "init"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        f"gateway: error: setting storage.endpoint_url: {moto_server} does not use TLS, and the "
        "bucket policy denies every request without TLS, so the gateway would lock itself out "
        "of its buckets; use an https:// endpoint, or set storage.allow_insecure_endpoint = true "
        "for a test or lab store"
    ]
    assert "Traceback" not in done.stderr
    names = [
        b["Name"]
        for b in boto3.client(
            "s3", endpoint_url=moto_server, region_name="us-east-1", **_keys()
        ).list_buckets()["Buckets"]
    ]
    assert bucket not in names  # nothing was provisioned


def test_the_story_runs_on_s3_without_tls(s3_gateway: S3Gateway, tmp_path: Path) -> None:
    init = s3_gateway.server.gateway("init")  # again: idempotent, and it says what it allowed
    assert (
        f"gateway: warning: storage.allow_insecure_endpoint is set: requests to "
        f"{s3_gateway.endpoint} travel without TLS" in init.stderr
    )
    assert "denies the gateway itself" not in init.stderr
    assert (
        "not TLS (storage.allow_insecure_endpoint)"
        in (s3_gateway.server.root / "server.log").read_text()
    )

    plaintext = helpers.random_bytes(7 * MIB + 123, seed=5)
    (tmp_path / "weights.bin").write_bytes(plaintext)
    artifact = _push(s3_gateway, tmp_path)
    stored = s3_gateway.s3().list_objects_v2(Bucket=s3_gateway.bucket).get("Contents", [])
    assert [o["Size"] for o in stored if o["Key"].endswith(".age")] == [
        int(_artifact(s3_gateway, artifact)["size"])
    ]
    assert not [p for p in s3_gateway.server.root.rglob("*.age") if p.is_file()]

    _grant(s3_gateway, tmp_path, artifact)
    s3_gateway.client(
        "eval",
        "pull",
        artifact,
        "-o",
        str(tmp_path / "out.bin"),
        "-i",
        str(tmp_path / "eval.agekey"),
    )
    assert (tmp_path / "out.bin").read_bytes() == plaintext
    s3_gateway.client("eval", "pull", artifact, "-o", str(tmp_path / "raw.age"), "--raw")
    subprocess.run(
        [
            age_program(),
            "-d",
            "-i",
            str(tmp_path / "eval.agekey"),
            "-o",
            str(tmp_path / "by-age.bin"),
            str(tmp_path / "raw.age"),
        ],
        check=True,
    )
    assert (tmp_path / "by-age.bin").read_bytes() == plaintext
    _verify(s3_gateway, tmp_path)


def _push(gw: S3Gateway, work: Path) -> str:
    gw.client("lab", "keygen", "--type", "signing", "-o", str(work / "lab.key"))
    done = gw.client(
        "lab",
        *("push", str(work / "weights.bin"), "--name", "weights", "--kind", "weights"),
        *("--share-with", "agency-a", "--signing-key", str(work / "lab.key")),
    )
    return done.stdout.strip()


def _artifact(gw: S3Gateway, artifact: str) -> dict[str, object]:
    answer = requests.get(
        f"{gw.server.url}/v1/artifacts/{artifact}", headers=gw.server.auth("lab"), timeout=10
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


def _grant(gw: S3Gateway, work: Path, artifact: str) -> None:
    gw.client("eval", "keygen", "--type", "age", "-o", str(work / "eval.agekey"))
    request = gw.client("eval", "request", artifact, "--justification", "pre-deployment evaluation")
    gw.client("lab", "approve", request.stdout.strip(), "--hours", "24")


def _verify(gw: S3Gateway, work: Path) -> None:
    key = requests.get(gw.server.url + "/v1/audit/key", timeout=10).text.strip()
    (work / "audit.vkey").write_text(key + "\n")
    gw.client("auditor", "audit", "export", "-o", str(work / "log.jsonl"))
    verdict = gw.client(
        "auditor",
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--file",
        str(work / "log.jsonl"),
    )
    assert verdict.stdout.startswith("ok: "), verdict.stdout + verdict.stderr
    lines = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    actions = [json.loads(base64.b64decode(x["leaf"]))["action"] for x in lines if "leaf" in x]
    for action in ("upload.complete", "access.approve", "key.release", "content.download"):
        assert action in actions, actions
    assert actions.count("key.release") == 1  # two pulls, one release


def test_a_store_that_denies_the_gateway_is_a_503_naming_the_cause(s3_gateway: S3Gateway) -> None:
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyAll",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{s3_gateway.bucket}/*"],
            }
        ],
    }
    s3_gateway.s3().put_bucket_policy(Bucket=s3_gateway.bucket, Policy=json.dumps(deny))
    url, lab = s3_gateway.server.url, s3_gateway.server.auth("lab")
    answer = requests.post(
        url + "/v1/uploads",
        json={"name": "m", "kind": "weights", "share_with": ["agency-a"]},
        headers=lab,
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["status"] == 503 and answer.json()["detail"]
    ready = requests.get(url + "/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["checks"]["object_store"] != "ok"
    log = (s3_gateway.server.root / "server.log").read_text()
    assert "the object store denied the gateway access (S3 said 403" in log
    assert "Traceback" not in log
