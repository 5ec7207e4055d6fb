"""The gateway's runtime parts, assembled once from the configuration.

One :class:`Gateway` holds the database, object store, master key, audit signer and
clock. The Flask app carries it (``app.extensions["gateway"]``); the CLI builds one
directly. Nothing here is global: tests build as many as they like.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.db import Database
from gateway.keystore import MasterKey

if TYPE_CHECKING:
    from gateway.storage import ObjectStore

MASTER_KEY_FILE = "master.key"
AUDIT_KEY_FILE = "audit-signing.key"
URL_KEY_FILE = "url-signing.key"


def storage_settings(config: Config) -> Any:
    """The object store's settings from the ``[storage]`` section."""
    from gateway.storage import StorageSettings

    s = config.storage
    return StorageSettings(
        backend=s.backend,
        root=Path(s.root),
        bucket=s.bucket,
        audit_bucket=s.audit_bucket,
        endpoint_url=s.endpoint_url or None,
        region=s.region,
        prefix=s.prefix,
        gateway_principal_arn=s.gateway_principal_arn or None,
        kms_key_id=s.kms_key_id or None,
        multipart_abort_days=s.multipart_abort_days,
        audit_retention_days=s.audit_retention_days,
        audit_dir=Path(config.audit.archive_dir),
    )


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        store: ObjectStore | None = None,
        database: Database | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._store = store
        self.db = database or Database(config.database.url)

    @property
    def keys_dir(self) -> Path:
        return Path(self.config.keys.dir)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from gateway.storage import make_store

            self._store = make_store(storage_settings(self.config))
        return self._store

    @cached_property
    def master_key(self) -> MasterKey:
        return MasterKey.load(self.keys_dir / MASTER_KEY_FILE)

    @cached_property
    def audit_signer(self) -> Any:
        from gateway.audit import note

        return note.load_signer(self.keys_dir / AUDIT_KEY_FILE)

    @cached_property
    def url_key(self) -> bytes:
        from gateway.keystore import read_secret_file

        return read_secret_file(self.keys_dir / URL_KEY_FILE)

    def now(self) -> Any:
        return self.clock.now()

    def close(self) -> None:
        self.db.dispose()
