"""What the tests need from outside the project, found once: the one "required in CI" switch.

The public test vectors and the real programs the tests run against (the ``age``
program) are looked up here. A checkout without one skips the tests that need it, with
the reason; with ``GATEWAY_REQUIRE_VECTORS=1`` (set by ``.ci/run``; the name is older than
its reach to programs) its absence fails the test instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE = "GATEWAY_REQUIRE_VECTORS"


def required() -> bool:
    """Whether a missing vector set or program is a failure (CI) rather than a skip."""
    return os.environ.get(REQUIRE) == "1"


def missing(reason: str) -> NoReturn:
    """Fail (CI) or skip (elsewhere) the test that needs what is missing."""
    if required():
        pytest.fail(f"{reason} ({REQUIRE}=1)")
    pytest.skip(reason)


def require_tool(name: str, package: str | None = None) -> str:
    """The path of program ``name`` on PATH; its absence fails in CI and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        missing(
            f"the {name} program is not on PATH "
            f"(Debian package {package or name}; `make test` installs it)"
        )
    return path
