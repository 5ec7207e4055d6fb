"""Installing a gateway: keys, database schema, object store; and the demo seed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

from gateway import events
from gateway.config import Config
from gateway.keystore import MasterKey, write_secret_file
from gateway.runtime import AUDIT_KEY_FILE, MASTER_KEY_FILE, URL_KEY_FILE, Gateway, storage_settings
from gateway.services import identity

OPERATOR_ORG = "operator"
DEMO = {
    "lab": ("demo-lab", "lab", "alice"),
    "evaluator": ("demo-agency", "agency", "eve"),
    "auditor": ("demo-oversight", "oversight", "otto"),
    "admin": (OPERATOR_ORG, "operator", "root"),
}


def _sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def migrate(url: str) -> None:
    """Bring the database schema to the newest revision (Alembic)."""
    from gateway.migrations import upgrade

    _sqlite_dir(url)
    upgrade(url)


def init(config: Config) -> Iterator[str]:
    keys = Path(config.keys.dir)
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (keys / MASTER_KEY_FILE).exists():
        MasterKey.create(keys / MASTER_KEY_FILE)
        yield f"created master key {keys / MASTER_KEY_FILE}"
    if not (keys / AUDIT_KEY_FILE).exists():
        from gateway.audit import note

        note.create_signer_file(keys / AUDIT_KEY_FILE, config.audit.origin)
        yield f"created audit signing key {keys / AUDIT_KEY_FILE}"
    if not (keys / URL_KEY_FILE).exists():
        write_secret_file(keys / URL_KEY_FILE, secrets.token_bytes(32))
        yield f"created URL signing key {keys / URL_KEY_FILE}"
    migrate(config.database.url)
    yield f"database ready at {config.database.url}"
    from gateway.storage.provision import provision

    provision(storage_settings(config))
    where = (
        config.storage.root
        if config.storage.backend == "local"
        else f"s3://{config.storage.bucket}"
    )
    yield f"object store ready ({config.storage.backend}: {where})"
    gw = Gateway(config)
    try:
        with gw.db.session() as session:
            identity.ensure_org(session, OPERATOR_ORG, "operator", gw.now())
    finally:
        gw.close()


def dev_seed(gw: Gateway) -> dict[str, tuple[str, str, str]]:
    """Demo organisations and a fresh development token for each role."""
    out = {}
    with events.fail_closed(gw) as session:
        for role, (org, kind, name) in DEMO.items():
            identity.ensure_org(session, org, kind, gw.now())
            token, _ = identity.create_token(
                session, org=org, role=role, name=name, ttl_days=30, now=gw.now()
            )
            events.record(
                gw,
                session,
                "admin.token.create",
                None,
                details={
                    "org": org,
                    "principal": name,
                    "role": role,
                    "ttl_days": 30,
                    "development": True,
                },
            )
            out[role] = (org, name, token)
    return out
