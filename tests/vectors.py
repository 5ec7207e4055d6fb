"""Where the public test vectors live: ``$GATEWAY_TEST_VECTORS`` or ``../shared/testdata``.

They are read in place, never copied into the project. A checkout without them skips
the tests that need them, with the reason; with ``GATEWAY_REQUIRE_VECTORS=1`` (set by
``.ci/run``) their absence fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def vectors_dir(kind: str) -> Path:
    """The directory of one kind of vectors (``age``, ``merkle``, ``note``), or skip/fail."""
    base = Path(os.environ.get("GATEWAY_TEST_VECTORS", ROOT.parent / "shared" / "testdata"))
    path = base / kind
    if not path.is_dir():
        reason = f"test vectors not found at {path} (set GATEWAY_TEST_VECTORS)"
        if os.environ.get("GATEWAY_REQUIRE_VECTORS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
