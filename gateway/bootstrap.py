"""Installing and administering a gateway from the operator's command line.

``init`` makes the keys, the database schema and the object store, and the operator's
organisation; ``dev_seed`` adds demo organisations with a development token per role.
The admin operations (organisations, tokens) each run in one transaction with their
audit entry, which names the principal by its id (``principal``) and its name
(``name``), as every entry names an actor by id.

Every command but ``init`` works on a gateway that exists: :func:`require_database`
refuses an SQLite database that is not there (rather than creating an empty one
wherever the command happens to run), and :func:`preflight` lists what would keep
``serve`` from serving (keys, database, object store), so it stops before it starts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, select
from sqlalchemy.orm import Session

from gateway import events
from gateway.audit import note
from gateway.config import Config
from gateway.custody import Custody, CustodyError, make_custody
from gateway.db import DIR_MODE, FILE_MODE
from gateway.errors import BadRequest, ServiceUnavailable
from gateway.keystore import write_secret_file
from gateway.migrations import upgrade
from gateway.models import ROLE_FOR_KIND, Org, OrgKind, Principal
from gateway.runtime import AUDIT_KEY_FILE, URL_KEY_FILE, Runtime
from gateway.services import identity
from gateway.storage import StorageSettings, make_store
from gateway.storage.provision import provision

OPERATOR_ORG = "operator"
DEV_TOKEN_DAYS = 30
DEMO = {
    "lab": ("demo-lab", "lab", "alice"),
    "evaluator": ("demo-agency", "agency", "eve"),
    "auditor": ("demo-oversight", "oversight", "otto"),
    "admin": (OPERATOR_ORG, "operator", "root"),
}


@contextmanager
def opened(config: Config) -> Iterator[Runtime]:
    """The gateway's runtime for one command, closed when it is done."""
    gw = Runtime(config)
    try:
        yield gw
    finally:
        gw.close()


def shown_url(url: str) -> str:
    """A database URL fit to print: its password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ValueError:
        return "(a database URL that does not parse)"


class NotInstalled(Exception):
    """The configuration names a gateway that is not there (or not whole): run ``init``."""


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for another database, or an in-memory one)."""
    try:
        parsed = make_url(url)
    except ValueError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def require_database(config: Config) -> None:
    """Refuse to work on an SQLite database file that does not exist."""
    path = sqlite_path(config.database.url)
    if path is not None and not path.is_file():
        raise NotInstalled(f"there is no gateway database at {path.resolve()}")


def preflight(config: Config) -> list[str]:
    """What keeps a gateway on ``config`` from serving, one line each (none: ready)."""
    from gateway.audit import store as audit_store

    problems: list[str] = []
    keys = Path(config.keys.dir)
    for name in (AUDIT_KEY_FILE, URL_KEY_FILE):
        if not (keys / name).is_file():
            problems.append(f"key file {keys / name} is missing")
    try:
        require_database(config)
        with opened(config) as gw, gw.db.session() as session:
            audit_store.size(session)
    except NotInstalled as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; told by its first line
        problems.append(f"the database is not usable: {str(exc).strip().splitlines()[0]}")
    try:
        make_store(StorageSettings.from_config(config)).check_writable()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"the object store is not writable: {exc}")
    try:
        custody = _checking_custody(config)
        try:
            custody.check()
        finally:
            custody.close()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        problems.append(f"the custody backend {config.custody.backend} is not usable: {exc}")
    return problems


def _sqlite_dir(url: str) -> None:
    """Create the missing directories of an SQLite database, each mode 0700."""
    path = sqlite_path(url)
    if path is None:
        return
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)  # mkdir's mode passes through the umask


def _private_database(url: str) -> Iterator[str]:
    """Tighten an SQLite database's files to 0600 (older gateways left them 0644); one line each.

    A directory that others may enter is the operator's to tighten, and is said.
    """
    path = sqlite_path(url)
    if path is None:
        return
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if file.is_file() and file.stat().st_mode & 0o077:
            was = file.stat().st_mode & 0o777
            os.chmod(file, FILE_MODE)
            yield f"database file {file}: mode 0600 (was {was:04o})"
    folder = path.resolve().parent
    if folder.stat().st_mode & 0o077:
        yield (
            f"warning: the database's directory {folder} is open to other users "
            f"(mode {folder.stat().st_mode & 0o777:04o}): make it 0700"
        )


def migrate(url: str) -> None:
    """Bring the database schema to the newest revision (Alembic)."""
    _sqlite_dir(url)
    upgrade(url)


def init(config: Config) -> Iterator[str]:
    """Create what is missing (keys, schema, object store, operator org); one line per step."""
    keys = Path(config.keys.dir)
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (keys / AUDIT_KEY_FILE).exists():
        note.create_signer_file(keys / AUDIT_KEY_FILE, config.audit.origin)
        yield f"created audit signing key {keys / AUDIT_KEY_FILE}"
    if not (keys / URL_KEY_FILE).exists():
        write_secret_file(keys / URL_KEY_FILE, secrets.token_bytes(32))
        yield f"created URL signing key {keys / URL_KEY_FILE}"
    migrate(config.database.url)
    yield from _private_database(config.database.url)
    yield f"database ready at {shown_url(config.database.url)}"
    # The store's own warnings (an endpoint without TLS, a policy that locks the gateway
    # out) are said at init, where the operator can still act on them.
    for step in provision(StorageSettings.from_config(config)):
        if step.startswith("warning: "):
            yield step
    where = (
        config.storage.root
        if config.storage.backend == "local"
        else f"s3://{config.storage.bucket}"
    )
    yield f"object store ready ({config.storage.backend}: {where})"
    yield prepare_custody(config)
    with opened(config) as gw, gw.db.session() as session:
        identity.ensure_org(session, OPERATOR_ORG, "operator", gw.now())


def prepare_custody(config: Config) -> str:
    """Make the ``[custody]`` backend usable (the local key directory, 0700) and check it.

    One line saying what is ready, or :class:`ServiceUnavailable` with one line saying why not
    (the KMS or token unreachable, the credentials or PIN refused, a mechanism missing).
    """
    custody = _checking_custody(config)
    try:
        custody.check()
    except CustodyError as exc:
        raise ServiceUnavailable(
            f"the custody backend {custody.name} is not usable: {exc}"
        ) from None
    finally:
        custody.close()
    return f"custody ready ({custody.name}: {_custody_where(config)})"


def _checking_custody(config: Config) -> Custody:
    """A backend for a check only: it reads the PIN from a copy of the environment.

    The backend removes a PIN read from the environment, so that children never inherit
    it; a check must leave it there for the backend that serves (in this process, or in
    the workers it forks).
    """
    return make_custody(config.custody, keys_dir=Path(config.keys.dir), environ=dict(os.environ))


def _custody_where(config: Config) -> str:
    c = config.custody
    if c.backend == "local":
        return str(c.key_dir(Path(config.keys.dir)))
    if c.backend == "aws-kms":
        keys = "a key per artifact" if c.kms_per_artifact_keys else f"key {c.kms_key_id}"
        return f"{keys} in {c.kms_endpoint_url or c.kms_region}"
    return f"token {c.pkcs11_token_label!r} through {c.pkcs11_module}"


def create_org(gw: Runtime, name: str, kind: str) -> None:
    """Organisation ``name`` of ``kind``, recorded as ``admin.org.create``."""
    with events.fail_closed(gw) as session:
        identity.create_org(session, name, kind, gw.now())
        events.record(gw, session, "admin.org.create", None, details={"org": name, "kind": kind})


def _issue(
    gw: Runtime, session: Session, org: str, role: str, name: str, ttl_days: int, **extra: Any
) -> str:
    """A new token for principal ``name`` of ``org`` (made if new), recorded in ``session``."""
    token, principal = identity.create_token(
        session,
        org=org,
        role=role,
        name=name,
        ttl_days=ttl_days,
        now=gw.now(),
        max_ttl_days=gw.config.tokens.max_ttl_days,
    )
    details = {
        "org": org,
        "principal": principal.id,
        "name": name,
        "role": role,
        "ttl_days": ttl_days,
        **extra,
    }
    events.record(gw, session, "admin.token.create", None, details=details)
    return token


def _fits(session: Session, org: str, role: str) -> None:
    """Refuse a role that an organisation's principals cannot have, in the operator's words."""
    found = session.get(Org, org)
    if found is None:
        return  # the service names the missing organisation
    fits = ROLE_FOR_KIND[OrgKind(found.kind)]
    if fits != role:
        article = "an" if found.kind[:1] in "aeiou" else "a"
        raise BadRequest(
            f"role {role} does not fit organisation {org}: it is {article} {found.kind}, "
            f"whose principals are {fits}s"
        )


def create_token(gw: Runtime, org: str, role: str, name: str, ttl_days: int) -> str:
    """A new bearer token for principal ``name`` of ``org``, recorded as ``admin.token.create``."""
    with events.fail_closed(gw) as session:
        _fits(session, org, role)
        return _issue(gw, session, org, role, name, ttl_days)


def revoke_tokens(gw: Runtime, org: str, name: str) -> int:
    """Revoke every token of principal ``name`` of ``org`` (``admin.token.revoke``); how many."""
    with events.fail_closed(gw) as session:
        count = identity.revoke_tokens(session, org=org, name=name, now=gw.now())
        principal = session.scalars(
            select(Principal.id).where(Principal.org == org, Principal.name == name)
        ).one()
        details = {"org": org, "principal": principal, "name": name, "count": count}
        events.record(gw, session, "admin.token.revoke", None, details=details)
    return count


def not_development(config: Config) -> list[str]:
    """The settings that make ``config`` something other than the embedded development
    configuration (an SQLite database, the local object store, local key custody, no
    witnesses, no public URL), one phrase each; none: a development configuration."""
    try:
        database = make_url(config.database.url).get_backend_name()
    except ValueError:
        database = "a database URL that does not parse"
    found = [f"database.url is {database}, not sqlite"] if database != "sqlite" else []
    if config.storage.backend != "local":
        found.append(f"storage.backend is {config.storage.backend}")
    if config.custody.backend != "local":
        found.append(f"custody.backend is {config.custody.backend}")
    if config.audit.witnesses.strip() or config.audit.policy_file:
        found.append("audit names witnesses")
    if config.server.public_url:
        found.append("server.public_url is set")
    return found


def dev_seed(gw: Runtime) -> dict[str, tuple[str, str, str]]:
    """Demo organisations and a fresh development token for each role: ``{role: (org, name, token)}``.

    The demo principals' earlier tokens are revoked in the same transaction (recorded as
    ``admin.token.revoke``), so running it again leaves one live token per role, not a
    pile of admin tokens printed into old terminals and logs.
    """
    out = {}
    with events.fail_closed(gw) as session:
        for role, (org, kind, name) in DEMO.items():
            identity.ensure_org(session, org, kind, gw.now())
            _revoke_earlier(gw, session, org, name)
            days = min(DEV_TOKEN_DAYS, gw.config.tokens.max_ttl_days)
            token = _issue(gw, session, org, role, name, days, development=True)
            out[role] = (org, name, token)
    return out


def _revoke_earlier(gw: Runtime, session: Session, org: str, name: str) -> None:
    """Revoke the live tokens of principal ``name`` of ``org``, if it exists and has any."""
    principal = session.scalars(
        select(Principal.id).where(Principal.org == org, Principal.name == name)
    ).first()
    if principal is None:
        return
    count = identity.revoke_tokens(session, org=org, name=name, now=gw.now())
    if count:
        details = {"org": org, "principal": principal, "name": name, "count": count}
        events.record(
            gw, session, "admin.token.revoke", None, details={**details, "development": True}
        )
