"""Faults on demand, and the in-process gateway the fault matrix runs them on.

The object store and the database commit, each failing once at the Nth call.

A store outage, a disk error at commit or a lock timeout cannot be caused on purpose at
an exact point of a flow, so they are injected here, at the two seams every flow goes
through: every method of the :class:`~gateway.storage.ObjectStore` protocol, and the
commit of every database transaction that wrote something (a SQLAlchemy ``commit``
event; a read-only transaction's commit has nothing to lose).

Counting starts at :meth:`arm`; ``arm(None)`` only counts, so a clean run tells how many
calls a flow makes, and the fault matrix then fails each of them in turn.

:func:`build` makes a gateway with real parts (a directory or S3 on a moto server, SQLite)
and both faults in place; :func:`assert_invariants` is what must hold after every fault.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from flask.testing import FlaskClient
from nacl.signing import SigningKey
from pyrage import x25519
from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from gateway import bootstrap
from gateway.app import create_app
from gateway.audit import store as audit_store
from gateway.audit import verify
from gateway.clock import FrozenClock
from gateway.db import Database
from gateway.models import Artifact, CustodyKey, Grant, PendingDeletion, Upload
from gateway.runtime import Runtime
from gateway.services import identity
from gateway.storage import ObjectStore, StorageError, StorageSettings, make_store
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import SEED, Principals, make_config
from tests.services.conftest import Evaluator

STORE_METHODS = (
    "begin_upload",
    "put_part",
    "stored_parts",
    "complete_upload",
    "abort_upload",
    "cleanup_stale_uploads",
    "open_read",
    "read_prefix",
    "size",
    "exists",
    "delete",
    "presign_get",
    "check_writable",
)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Counter:
    """Counts calls while armed; the ``fail_at``-th (from 1) fails, once."""

    def __init__(self) -> None:
        self.fail_at: int | None = None
        self.armed = False
        self.calls: list[str] = []
        self.failed: str | None = None

    def arm(self, fail_at: int | None) -> None:
        self.armed, self.fail_at, self.calls, self.failed = True, fail_at, [], None

    def disarm(self) -> None:
        self.armed, self.fail_at = False, None

    def hit(self, what: str) -> bool:
        """Count a call of ``what``; whether it is the one to fail."""
        if not self.armed:
            return False
        self.calls.append(what)
        if len(self.calls) == self.fail_at:
            self.failed = what
            return True
        return False


class FaultyStore(Counter):
    """An object store whose every protocol method passes through, but the Nth call fails."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__()
        self.inner = inner

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.hit(name):
            raise StorageError(f"injected fault: {name} fails once")
        return getattr(self.inner, name)(*args, **kwargs)


def _passing(name: str) -> Callable[..., Any]:
    def method(self: FaultyStore, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    return method


for _name in STORE_METHODS:
    setattr(FaultyStore, _name, _passing(_name))


class FaultyCommits(Counter):
    """The Nth commit of a transaction that wrote fails, as a disk or lock error would."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        event.listen(db.engine, "before_cursor_execute", self._saw)
        event.listen(db.engine, "commit", self._commit)
        event.listen(db.engine, "rollback", lambda conn: conn.info.pop("wrote", None))

    def _saw(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(_WRITES):
            conn.info["wrote"] = True

    def _commit(self, conn: Connection) -> None:
        wrote = conn.info.pop("wrote", False)
        if wrote and self.hit("commit"):
            raise OperationalError("COMMIT", {}, Exception("injected fault: commit fails once"))


# --- an in-process gateway with both faults -------------------------------------------

MIB = 1 << 20


@dataclass
class Gateway:
    """One gateway, its faults, and a lab and an evaluator of agency-a."""

    rt: Runtime
    client: FlaskClient
    store: FaultyStore
    commits: FaultyCommits
    clock: FrozenClock
    principals: Principals
    lab: Lab
    evaluator: Evaluator

    def close(self) -> None:
        self.rt.close()


def build(tmp_path: Path, backend: str, moto_url: str | None = None) -> Gateway:
    settings: dict[str, Any] = {
        "access.recheck_bytes": 1 << 20,
        # every sweep publishes an anchor (each run adds entries), so every run of a flow
        # makes the same calls and commits: a heads entry, the signed and published rows
        "audit.anchor_every_entries": 1,
    }
    if backend == "s3":
        unique = uuid.uuid4().hex[:12]
        settings |= {
            "storage.backend": "s3",
            "storage.endpoint_url": moto_url,
            "storage.allow_insecure_endpoint": True,  # moto server speaks plain http
            "storage.bucket": f"faults-{unique}",
            "storage.audit_bucket": f"faults-audit-{unique}",
            # moto dates every multipart upload 2010-11-10, so the sweeper's clean-up of
            # store uploads older than twice this would abort the ones a test still uses.
            "uploads.open_ttl_hours": 200_000,
        }
    config = make_config(tmp_path, **settings)
    list(bootstrap.init(config))
    if backend == "s3":  # moto evaluates the policy's Deny unconditionally (tests/storage)
        s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
        for bucket in (config.storage.bucket, config.storage.audit_bucket):
            s3.delete_bucket_policy(Bucket=bucket)
    store = FaultyStore(make_store(StorageSettings.from_config(config)))
    db = Database(config.database.url)
    commits = FaultyCommits(db)
    clock = FrozenClock()
    rt = Runtime(config, clock=clock, store=store, database=db)  # type: ignore[arg-type]
    client = create_app(config, runtime=rt).test_client()
    principals = _seed(rt)
    key = SigningKey.generate()
    me = client.get("/v1/me", headers=principals.auth("lab")).get_json()
    r = client.put(
        "/v1/me/signing-key",
        json=helpers.key_registration(key, me),
        headers=principals.auth("lab"),
    )
    assert r.status_code == 200
    evaluator = Evaluator(client, principals, "eval", x25519.Identity.generate())
    evaluator.register()
    return Gateway(
        rt, client, store, commits, clock, principals, Lab(client, principals, key), evaluator
    )


def _seed(rt: Runtime) -> Principals:
    tokens = {}
    with rt.db.session() as session:
        for short, org, kind, role in SEED:
            identity.ensure_org(session, org, kind, rt.now())
            token, _ = identity.create_token(
                session, org=org, role=role, name=short.replace("_", "-"), ttl_days=30, now=rt.now()
            )
            tokens[short] = token
    return Principals(tokens)


# --- what the flows start from ------------------------------------------------------------


@dataclass
class Prepared:
    """An upload with every part stored, and its signed completion."""

    upload: dict[str, Any]
    data: bytes
    plaintext: bytes
    body: dict[str, Any]


def prepare_upload(gw: Gateway, size: int = 6 * MIB) -> Prepared:
    plaintext = helpers.random_bytes(size, seed=len(gw.store.calls) + size)
    up = gw.lab.create(name=f"model-{uuid.uuid4().hex[:8]}")
    data = helpers.age_file(up["recipient"], plaintext)
    gw.lab.put_all(up, data)
    m = helpers.manifest(up, data, plaintext)
    return Prepared(up, data, plaintext, {"manifest": m, "signature": helpers.sign(m, gw.lab.key)})


def complete(gw: Gateway, prepared: Prepared) -> Any:
    return gw.client.post(
        f"/v1/uploads/{prepared.upload['id']}/complete", json=prepared.body, headers=gw.lab.auth
    )


@dataclass
class Shared:
    artifact: dict[str, Any]
    plaintext: bytes
    grant: str


def shared_artifact(gw: Gateway, *, released: bool, size: int = 3 * MIB) -> Shared:
    """An artifact shared with agency-a and a grant of the evaluator on it."""
    prepared = prepare_upload(gw, size)
    r = complete(gw, prepared)
    assert r.status_code == 201, r.get_json()
    artifact = r.get_json()
    req = gw.evaluator.request(artifact)
    grant = gw.client.post(
        f"/v1/access-requests/{req['id']}/approve", json={}, headers=gw.lab.auth
    ).get_json()
    if released:
        assert gw.evaluator.content(artifact, "bytes=0-0").status_code == 206
    return Shared(artifact, prepared.plaintext, grant["id"])


# --- what must hold after every fault -------------------------------------------------------


def assert_refusal(r: Any) -> None:
    """Every answer that is not a success is a 4xx or a 503, as problem+json."""
    if r.status_code < 300:
        return
    assert 400 <= r.status_code < 500 or r.status_code == 503, (r.status_code, r.get_data())
    assert r.mimetype == "application/problem+json" and r.get_json()["detail"]


def checkpoint(gw: Gateway) -> str:
    with gw.rt.db.session() as session:
        return audit_store.sign_checkpoint(session, gw.rt.audit_signer, gw.rt.config.audit.origin)


def assert_invariants(gw: Gateway, earlier: str) -> None:
    """The log verifies and extends ``earlier``; every release is logged; nothing half-stored."""
    rt = gw.rt
    with rt.db.session() as session:
        lines = list(audit_store.export(session, rt.audit_signer, rt.config.audit.origin))
        artifacts = list(session.scalars(select(Artifact)))
        grants = list(session.scalars(select(Grant)))
        uploads = list(session.scalars(select(Upload)))
        queued = set(session.scalars(select(PendingDeletion.key)))
        keys = set(session.scalars(select(CustodyKey.upload_id)))
    verdict = verify.verify_export(lines, rt.audit_signer.verifier_key, earlier=[earlier])
    assert verdict.ok, verdict.line()
    logged = [verify_entry(line) for line in lines if '"leaf"' in line]
    released = {e["grant"] for e in logged if e["action"] == "key.release"}
    for g in grants:
        assert g.header is None or g.id in released, f"grant {g.id}: a header without key.release"
    for a in artifacts:
        if a.state == "available":
            assert rt.store.inner.exists(a.object_key), f"available {a.id} without its object"
        else:
            assert a.upload_id not in keys, f"shredded {a.id} still has its custody key"
            assert all(g.state != "active" or g.artifact_id != a.id for g in grants)
            gone = not rt.store.inner.exists(a.object_key)
            assert gone or a.object_key in queued, (
                f"shredded {a.id}: object neither gone nor queued"
            )
    made = {a.upload_id for a in artifacts}
    for u in uploads:
        assert (u.state == "completed") == (u.id in made), f"upload {u.id} {u.state}"


def verify_entry(line: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(json.loads(line)["leaf"])))


def decrypts(gw: Gateway, body: bytes) -> bytes:
    return bytes(gw.evaluator.decrypt(body))


def stored(gw: Gateway, artifact_id: str) -> bytes:
    out = io.BytesIO()
    for chunk in gw.rt.store.inner.open_read(helpers.object_key(gw.rt, artifact_id)):
        out.write(chunk)
    return out.getvalue()
