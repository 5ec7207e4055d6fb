"""Provisioning of the object store, run by ``gateway init``; safe to run again.

``local``: the object, staging and audit directories, mode 0700.

``s3``: the artifact bucket and the audit bucket, each access-controlled:

- Block Public Access, all four settings;
- default encryption: SSE-S3 (AES-256), or SSE-KMS with ``kms_key_id``;
- versioning;
- a bucket policy, from the template ``storage.policy_template`` names or else the one in
  the package (``gateway/storage/bucket-policy.json``), that denies requests without TLS
  (``aws:SecureTransport`` false) and every principal but the gateway's
  (``gateway_principal_arn``, else the caller of STS GetCallerIdentity; an assumed-role
  session is named by its role's ARN, since that is what ``aws:PrincipalArn`` holds);
- a lifecycle rule that aborts incomplete multipart uploads after
  ``multipart_abort_days``; the artifact bucket also expires noncurrent versions after a
  day, a safety net behind :meth:`S3Store.delete`, which already removes every version.

The audit bucket is created with Object Lock, and its default retention is COMPLIANCE
mode for ``audit_retention_days``: nobody, the account root included, can delete or
overwrite an anchored checkpoint before then.

A plain ``http://`` endpoint (a lab's MinIO, moto) is refused, in one line naming the
setting, unless ``allow_insecure_endpoint`` is set: a TLS-only policy would lock the
gateway out of its own buckets. With it, every statement conditioned on
``aws:SecureTransport`` is left out of the policy, and a warning says so. When the
policy names the caller itself, provisioning ends by writing and deleting a probe object
in the artifact bucket, so a store that evaluates the policy otherwise than S3 does (moto
ignores its conditions) is named in a warning here, not first met at the first upload.
Warnings are the returned lines that begin with ``warning:``.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gateway.storage.base import StorageError, StorageSettings
from gateway.storage.s3 import (
    error_code,
    is_denied,
    is_insecure,
    make_client,
    make_session,
    wrap,
)

DEFAULT_TEMPLATE = "bucket-policy.json"
"""The packaged bucket policy template, beside this module (package data of ``gateway.storage``)."""
_ASSUMED_ROLE = re.compile(r"^arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/[^/]+$")
_PLACEHOLDER = re.compile(r"\$\{[a-z_]+\}")
_TLS_KEY = "aws:securetransport"


def provision(
    settings: StorageSettings, *, session: boto3.session.Session | None = None
) -> list[str]:
    """Create or bring up to date what ``settings`` describe; returns one line per step done."""
    if settings.backend == "local":
        return provision_local(settings)
    if settings.backend != "s3":
        raise StorageError(
            f'unknown storage backend {settings.backend!r} (expected "local" or "s3")'
        )
    template, warnings = transport_policy(settings, load_template(settings))
    session = session or make_session(settings)
    client = make_client(settings, session=session)
    try:
        principals = [settings.gateway_principal_arn or caller_principal_arn(settings, session)]
        done = [*warnings, _artifact_bucket(client, settings, template, principals)]
        done.append(_audit_bucket(client, settings, template, principals))
        if not settings.gateway_principal_arn:
            done += _probe(client, settings)
    except (BotoCoreError, ClientError) as exc:
        raise wrap(exc, "cannot provision the buckets") from exc
    return done


def requires_tls(template: Any) -> bool:
    """Whether any statement of the policy template is conditioned on ``aws:SecureTransport``."""
    return any(_mentions_tls(s) for s in _statements(template))


def transport_policy(settings: StorageSettings, template: Any) -> tuple[Any, list[str]]:
    """The template fit for ``settings.endpoint_url``, and the warnings to show; or refuse.

    Over TLS the template is used as it is. A plain ``http://`` endpoint is refused unless
    ``allow_insecure_endpoint`` is set; then the TLS-only statements are left out.
    """
    endpoint = settings.endpoint_url
    if not is_insecure(endpoint):
        return template, []
    if not settings.allow_insecure_endpoint:
        lockout = (
            ", and the bucket policy denies every request without TLS, so the gateway would "
            "lock itself out of its buckets"
            if requires_tls(template)
            else ""
        )
        raise StorageError(
            f"setting storage.endpoint_url: {endpoint} does not use TLS{lockout}; use an "
            "https:// endpoint, or set storage.allow_insecure_endpoint = true for a test or "
            "lab store"
        )
    warning = (
        f"warning: storage.allow_insecure_endpoint is set: requests to {endpoint} travel "
        "without TLS, and the bucket policy does not require it"
    )
    kept = [s for s in _statements(template) if not _mentions_tls(s)]
    return {**template, "Statement": kept} if isinstance(template, dict) else template, [warning]


def _statements(template: Any) -> list[Any]:
    statements = template.get("Statement", []) if isinstance(template, dict) else []
    return statements if isinstance(statements, list) else [statements]


def _mentions_tls(statement: Any) -> bool:
    condition = statement.get("Condition", {}) if isinstance(statement, dict) else {}
    if not isinstance(condition, dict):
        return False
    return any(
        isinstance(keys, dict) and any(str(k).lower() == _TLS_KEY for k in keys)
        for keys in condition.values()
    )


def _probe(client: Any, settings: StorageSettings) -> list[str]:
    """Write and delete a probe object in the artifact bucket, as the gateway will; a warning if refused."""
    key = f"{settings.prefix}.probe/provision"
    try:
        answer = client.put_object(Bucket=settings.bucket, Key=key, Body=b"probe")
        version = answer.get("VersionId")
        client.delete_object(
            Bucket=settings.bucket, Key=key, **({"VersionId": version} if version else {})
        )
    except ClientError as exc:
        if not is_denied(exc):
            raise
        warning = (
            f"warning: bucket {settings.bucket}: the bucket policy just provisioned denies the "
            f"gateway itself (S3 said {error_code(exc)}), so uploads and downloads will fail; "
            "this store does not evaluate the policy as AWS S3 does (moto ignores its "
            "conditions): give storage.policy_template a policy it honours (README: the S3 profile)"
        )
        return [warning]
    return []


def provision_local(settings: StorageSettings) -> list[str]:
    folders = [
        settings.root,
        settings.root / "objects",
        settings.root / "staging",
        settings.audit_dir,
    ]
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
    return [f"directory {folder}: mode 0700" for folder in folders]


def caller_principal_arn(settings: StorageSettings, session: boto3.session.Session) -> str:
    """The ARN that ``aws:PrincipalArn`` holds for the credentials in use."""
    try:
        sts = session.client("sts", endpoint_url=settings.endpoint_url or None)
        arn = str(sts.get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(
            f"cannot tell the gateway's principal from STS ({exc}); set storage.gateway_principal_arn"
        ) from None
    match = _ASSUMED_ROLE.match(arn)
    if match:
        partition, account, role = match.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return arn


def load_template(settings: StorageSettings) -> Any:
    """The bucket policy template: ``settings.policy_template``, else the packaged one."""
    custom = settings.policy_template
    where = str(custom) if custom is not None else f"{DEFAULT_TEMPLATE} (packaged)"
    try:
        if custom is not None:
            text = Path(custom).read_text(encoding="utf-8")
        else:
            text = resources.files("gateway.storage").joinpath(DEFAULT_TEMPLATE).read_text("utf-8")
        return json.loads(text)
    except OSError as exc:
        raise StorageError(f"bucket policy template {where}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise StorageError(f"bucket policy template {where}: not JSON: {exc}") from None


def render_policy(template: Any, bucket: str, principals: list[str]) -> dict[str, Any]:
    """The template with ``${bucket_arn}`` and ``${gateway_principal_arns}`` filled in."""
    partition = principals[0].split(":")[1] if principals[0].startswith("arn:") else "aws"
    text = {"${bucket_arn}": f"arn:{partition}:s3:::{bucket}"}
    lists = {"${gateway_principal_arns}": principals}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            if value in lists:
                return lists[value]
            for name, replacement in text.items():
                value = value.replace(name, replacement)
            left = _PLACEHOLDER.search(value)
            if left:
                raise StorageError(f"bucket policy template: unknown placeholder {left.group()}")
        return value

    rendered: dict[str, Any] = fill(template)
    return rendered


def _ensure_bucket(client: Any, settings: StorageSettings, name: str, *, object_lock: bool) -> str:
    try:
        client.head_bucket(Bucket=name)
        return "exists"
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(
                f"bucket {name} exists but is not reachable with these credentials"
            ) from None
    kwargs: dict[str, Any] = {"Bucket": name}
    if settings.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    if object_lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        if error_code(exc) == "BucketAlreadyExists":
            raise StorageError(
                f"bucket name {name} is taken by another account; choose another"
            ) from None
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
    return "created"


def _protect(
    client: Any, settings: StorageSettings, bucket: str, lifecycle: list[dict[str, Any]]
) -> str:
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    if settings.kms_key_id:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": settings.kms_key_id}
    else:
        default = {"SSEAlgorithm": "AES256"}
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": default,
                    "BucketKeyEnabled": bool(settings.kms_key_id),
                }
            ]
        },
    )
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle}
    )
    return f"public access blocked, encrypted ({default['SSEAlgorithm']}), versioned"


def _abort_rule(settings: StorageSettings) -> dict[str, Any]:
    return {
        "ID": "abort-incomplete-multipart-uploads",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": settings.multipart_abort_days},
    }


def _artifact_bucket(
    client: Any, settings: StorageSettings, template: Any, principals: list[str]
) -> str:
    bucket = settings.bucket
    state = _ensure_bucket(client, settings, bucket, object_lock=False)
    expire = {
        "ID": "expire-noncurrent-versions",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
    }
    protected = _protect(client, settings, bucket, [_abort_rule(settings), expire])
    _apply_policy(client, bucket, template, principals)
    only = ", ".join(principals)
    return f"bucket {bucket} ({state}): {protected}, {_transport(template)}, only {only}"


def _audit_bucket(
    client: Any, settings: StorageSettings, template: Any, principals: list[str]
) -> str:
    bucket = settings.audit_bucket
    state = _ensure_bucket(client, settings, bucket, object_lock=True)
    protected = _protect(client, settings, bucket, [_abort_rule(settings)])
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {
                "DefaultRetention": {"Mode": "COMPLIANCE", "Days": settings.audit_retention_days}
            },
        },
    )
    _apply_policy(client, bucket, template, principals)
    days = settings.audit_retention_days
    return (
        f"audit bucket {bucket} ({state}): {protected}, Object Lock COMPLIANCE {days} days, "
        f"{_transport(template)}"
    )


def _transport(template: Any) -> str:
    return "TLS only" if requires_tls(template) else "TLS not required by the policy"


def _apply_policy(client: Any, bucket: str, template: Any, principals: list[str]) -> None:
    policy = render_policy(template, bucket, principals)
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy, separators=(",", ":")))
