"""The dashboard's blueprint with every page registered on it (what the app factory mounts)."""

from __future__ import annotations

from gateway.web import access, artifacts, audit, auth, reports
from gateway.web.base import bp

PAGES = (auth, artifacts, access, audit, reports)
"""The modules whose views are on :data:`bp` (imported for that effect)."""

__all__ = ["PAGES", "bp"]
