"""The gateway's runtime parts, assembled once from the configuration.

One :class:`Runtime` holds the database, object store, custody backend, audit signer, URL
key and clock. The Flask app carries it (``app.extensions["gateway"]``); the CLI builds one
directly. Nothing here is global: tests build as many as they like. The object store and
the keys are made on first use, so a command that needs only the database never reads a key.
"""

from __future__ import annotations

import threading
from datetime import datetime
from functools import cached_property
from pathlib import Path

from gateway.audit.note import Signer, load_signer
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.custody import Custody, make_custody
from gateway.db import Database
from gateway.keystore import read_secret_file
from gateway.storage import ObjectStore, StorageSettings, make_store

AUDIT_KEY_FILE = "audit-signing.key"
URL_KEY_FILE = "url-signing.key"


class Runtime:
    """The database, object store, custody backend, keys and clock of one gateway."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        store: ObjectStore | None = None,
        database: Database | None = None,
        custody: Custody | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._store = store
        self._custody = custody
        self._custody_lock = threading.Lock()  # one backend (one HSM login) per process
        self.db = database or Database(config.database.url)

    @property
    def keys_dir(self) -> Path:
        return Path(self.config.keys.dir)

    @cached_property
    def storage_settings(self) -> StorageSettings:
        return StorageSettings.from_config(self.config)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = make_store(self.storage_settings)
        return self._store

    @property
    def custody(self) -> Custody:
        """The ``[custody]`` backend: made on first use, connecting to nothing until then."""
        with self._custody_lock:
            if self._custody is None:
                self._custody = make_custody(self.config.custody, keys_dir=self.keys_dir)
            return self._custody

    @cached_property
    def audit_signer(self) -> Signer:
        return load_signer(self.keys_dir / AUDIT_KEY_FILE)

    @cached_property
    def url_key(self) -> bytes:
        return read_secret_file(self.keys_dir / URL_KEY_FILE)

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        if self._custody is not None:
            self._custody.close()
        self.db.dispose()
