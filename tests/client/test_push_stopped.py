"""What a push that stopped midway says, by the kind of failure that stopped it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.client import push as pushing
from gateway.client import transfer
from gateway.client.http import ApiError


def stopped_run() -> pushing.PushRun:
    saved: Any = SimpleNamespace(upload="upl_1234", file=SimpleNamespace(path="model.bin"))
    return pushing.PushRun(saved=saved, parts=8)


def test_an_untrusted_certificate_midway_gives_its_own_hint_not_run_again() -> None:
    """Running the same command again cannot mend a certificate: the hint names --ca-cert."""
    exc = ApiError(
        "the server's TLS certificate is not trusted by this machine (self-signed): https://gw",
        hint="give the CA that signed it with --ca-cert FILE",
        lasting=True,
    )
    said = transfer.push_stopped(exc, stopped_run(), Path("lab.key"), None)
    assert said.hint is not None and "--ca-cert FILE" in said.hint
    assert "run the same command again" not in said.hint
    assert "upload upl_1234 holds 0 of 8 parts" in said.detail


def test_a_dropped_connection_midway_says_how_to_resume() -> None:
    said = transfer.push_stopped(ApiError("connection reset"), stopped_run(), Path("lab.key"), None)
    assert said.hint is not None and "gateway push --resume upl_1234" in said.hint
