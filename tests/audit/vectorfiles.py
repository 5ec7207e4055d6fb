"""Collection-time listing of vector files, so each file is its own parametrized case.

A checkout without the vectors gets one placeholder case that calls ``vectors_dir`` and so
skips (or fails under ``GATEWAY_REQUIRE_VECTORS=1``) with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.vectors import ROOT, vectors_dir

BASE = Path(os.environ.get("GATEWAY_TEST_VECTORS", ROOT.parent / "shared" / "testdata"))


def vector_files(kind: str, pattern: str) -> list[object]:
    """``pytest.param`` per file matching ``pattern`` under ``<base>/<kind>``, ids relative to it."""
    root = BASE / kind
    if not root.is_dir():
        return [pytest.param(None, id=f"{kind}-vectors-missing")]
    files = sorted(root.glob(pattern))
    return [pytest.param(f, id=str(f.relative_to(root))) for f in files]


def need(kind: str, path: Path | None) -> Path:
    """The vector file, or skip/fail through ``vectors_dir`` when the vectors are missing."""
    if path is None:
        vectors_dir(kind)
        raise AssertionError("unreachable: vectors_dir skips or fails")
    return path
