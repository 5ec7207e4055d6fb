"""Every table of the gateway in one place: the metadata Alembic migrates and the tests compare.

Tables are declared beside the code that owns them (the metadata models, the audit log's
store, the denial counts, the dashboard's sessions); importing this module registers them all on
:data:`gateway.db.Base.metadata`. A module that declares a new table is added here.
"""

from __future__ import annotations

from sqlalchemy import MetaData

import gateway.audit.chains
import gateway.audit.pending
import gateway.audit.store
import gateway.models
import gateway.services.cosigning
import gateway.services.denials
import gateway.web.models
from gateway.db import Base

MODULES = (
    gateway.models,
    gateway.audit.store,
    gateway.audit.chains,
    gateway.audit.pending,
    gateway.services.denials,
    gateway.web.models,
    gateway.services.cosigning,
)
"""The modules that declare tables."""

metadata: MetaData = Base.metadata
