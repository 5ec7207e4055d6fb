"""Where the public test vectors live: ``$GATEWAY_TEST_VECTORS`` or ``../shared/testdata``.

They are read in place, never copied into the project. A checkout without them skips
the tests that need them, with the reason; in CI their absence fails instead
(:mod:`tests.tools`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.tools import missing

ROOT = Path(__file__).resolve().parent.parent


def vectors_dir(kind: str) -> Path:
    """The directory of one kind of vectors (``age``, ``merkle``, ``note``), or skip/fail."""
    base = Path(os.environ.get("GATEWAY_TEST_VECTORS", ROOT.parent / "shared" / "testdata"))
    path = base / kind
    if not path.is_dir():
        missing(f"test vectors not found at {path} (set GATEWAY_TEST_VECTORS)")
    return path
