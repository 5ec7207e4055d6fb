"""Several ``gateway serve`` instances on one PostgreSQL and one S3 store: the production profile, run here.

Every instance reads ``config/production.toml`` (the shipped production profile) and gets
from environment variables only what a machine of its own would say differently: its
port, where PostgreSQL, the S3 endpoint (moto server) and the keys are, and the local
test store's allowances (an ``http://`` endpoint, the README's policy for a store that
evaluates no conditions). ``gateway init`` runs once (keys, migrations, buckets); every
instance then shares the keys directory, as instances share their key files, and the
database and buckets, as they do in production.

:func:`start_moto` runs ``moto_server`` (S3 and KMS) for scripts that have no pytest
fixture. Used by the three-instance test, ``make run-cluster`` and ``bench/bench_cluster.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests

from tests.e2e.nginx import CHECKOUT, free_port

BIN = Path(sys.executable).parent
PRODUCTION = CHECKOUT / "config" / "production.toml"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: The README's bucket policy for an S3-compatible store that evaluates no conditions (moto).
STORE_POLICY = {
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
ORGS = (("lab-a", "lab"), ("lab-b", "lab"), ("agency-a", "agency"), ("agency-b", "agency"))
ORGS += (("oversight", "oversight"),)
TOKENS = {
    # short name: (org, role, token name)
    "lab": ("lab-a", "lab", "alice"),
    "lab_b": ("lab-b", "lab", "bert"),
    "eval": ("agency-a", "evaluator", "eve"),
    "eval2": ("agency-a", "evaluator", "erin"),
    "eval_b": ("agency-b", "evaluator", "bob"),
    "auditor": ("oversight", "auditor", "otto"),
}
UNLIMITED = {
    f"GATEWAY_LIMITS_{scope}_{kind}": "1000000/minute"
    for scope in ("PRINCIPAL", "ADDRESS")
    for kind in ("READS", "WRITES", "PARTS", "CONTENT")
}


@dataclass
class Instance:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    """The shared configuration and state of the instances, and the instances once started."""

    root: Path
    env: dict[str, str]
    bucket: str
    endpoint: str
    instances: list[Instance] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]

    def gateway(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real operator command on the cluster's configuration."""
        return subprocess.run(
            [str(BIN / "gateway"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def s3(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        )

    def init(self) -> None:
        """``gateway init`` once, then the organisations and a token per principal.

        The organisations and tokens are made by the operator commands' own functions
        (:mod:`gateway.bootstrap`) in one process on the cluster's environment: eleven
        ``gateway admin`` processes would take half a minute on a loaded machine.
        """
        self.gateway("init")
        seeded = subprocess.run(
            [sys.executable, "-c", "from tests.e2e.cluster import _seed; _seed()"],
            env=self.env,
            cwd=CHECKOUT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        self.tokens.update(json.loads(seeded.stdout))

    def start(self, count: int, extra_env: Mapping[str, str] | None = None) -> None:
        """Start ``count`` instances, each on a free port of 127.0.0.1, and wait until all are ready."""
        for n in range(count):
            port = free_port()
            log = self.root / f"instance-{n + 1}.log"
            instance = Instance(f"http://127.0.0.1:{port}", port, log)
            env = {**self.env, "GATEWAY_SERVER_PORT": str(port), **(extra_env or {})}
            with open(log, "wb") as out:
                instance.process = subprocess.Popen(
                    [str(BIN / "gateway"), "serve", "--port", str(port)],
                    env=env,
                    cwd=self.root,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.instances.append(instance)
        for instance in self.instances:
            _wait_ready(instance)

    def stop(self) -> None:
        for instance in self.instances:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
        for instance in self.instances:
            if instance.process is not None:
                try:
                    instance.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    instance.process.kill()
                    instance.process.wait()


def _seed() -> None:
    """The organisations and tokens, as ``gateway admin`` makes them; prints the tokens (JSON)."""
    from gateway import bootstrap
    from gateway.config import load

    config = load()
    tokens = {}
    with bootstrap.opened(config) as gw:
        for org, kind in ORGS:
            bootstrap.create_org(gw, org, kind)
        for short, (org, role, name) in TOKENS.items():
            tokens[short] = bootstrap.create_token(
                gw, org, role, name, config.tokens.default_ttl_days
            )
    print(json.dumps(tokens))  # noqa: T201 - read by Cluster.init


def _wait_ready(instance: Instance, seconds: float = 60) -> None:
    assert instance.process is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise RuntimeError(f"gateway serve exited: {instance.log.read_text(errors='replace')}")
        try:
            if requests.get(instance.url + "/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway serve did not become ready: {instance.log.read_text()}")


def cluster_env(
    root: Path,
    *,
    database_url: str,
    endpoint: str,
    bucket: str,
    kms_key_id: str = "",
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every process of the cluster: production.toml, and this machine's overrides."""
    policy = root / "store-policy.json"
    policy.write_text(json.dumps(STORE_POLICY))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))},
        **AWS,
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "GATEWAY_CONFIG": str(PRODUCTION),
        "GATEWAY_SERVER_HOST": "127.0.0.1",
        "GATEWAY_SERVER_PUBLIC_URL": "",
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_STORAGE_ENDPOINT_URL": endpoint,
        "GATEWAY_STORAGE_ALLOW_INSECURE_ENDPOINT": "true",
        "GATEWAY_STORAGE_POLICY_TEMPLATE": str(policy),
        "GATEWAY_STORAGE_BUCKET": bucket,
        "GATEWAY_STORAGE_AUDIT_BUCKET": f"{bucket}-audit",
        "GATEWAY_STORAGE_KMS_KEY_ID": kms_key_id,
        "GATEWAY_KEYS_DIR": str(root / "keys"),
        "GATEWAY_AUDIT_ARCHIVE_DIR": str(root / "audit"),
        **(settings or {}),
    }


def storage_key(endpoint: str) -> str:
    """A KMS key in ``endpoint`` (moto) for the buckets' default encryption (SSE-KMS)."""
    kms = boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
    )
    key_id: str = kms.create_key(Description="gateway storage")["KeyMetadata"]["KeyId"]
    return key_id


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``moto_server`` (S3, KMS) on a free port of 127.0.0.1; the process and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):  # noqa: S310 - local
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not answer on {url} within 30 s") from None
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes] | None, seconds: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spread(urls: Sequence[str], n: int) -> str:
    """The ``n``-th instance, round robin: how the tests spread requests over instances."""
    return urls[n % len(urls)]
