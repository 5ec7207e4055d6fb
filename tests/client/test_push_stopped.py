"""What a push that stopped midway says, by the kind of failure that stopped it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.client import push as pushing
from gateway.client import transfer
from gateway.client.errors import PushError
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


@pytest.mark.parametrize(
    "listing",
    [
        {"parts": "1,2"},
        {"parts": [{"number": "1", "size": 5, "sha256": "ab"}]},
        {"parts": [{"number": 1.5, "size": 5, "sha256": "ab"}]},
        {"parts": [{"number": 0, "size": 5, "sha256": "ab"}]},
        {"parts": [{"number": 1, "size": -1, "sha256": "ab"}]},
        {"parts": [{"number": 1, "size": True, "sha256": "ab"}]},
        {"parts": [{"number": 1, "size": 5}]},
        {"parts": [["1", 5, "ab"]]},
    ],
)
def test_a_part_listing_a_resume_cannot_use_is_refused_in_one_line(listing: Any) -> None:
    """A resumed push trusts the listing to skip parts: anything but whole numbers is refused."""
    with pytest.raises(PushError, match="the gateway sent no usable"):
        pushing.parts_of(listing)


def test_a_good_part_listing_is_read() -> None:
    listing = {
        "parts": [
            {"number": 2, "size": 5, "sha256": "ab"},
            {"number": 1, "size": 7, "sha256": "cd"},
        ]
    }
    assert pushing.parts_of(listing) == {2: (5, "ab"), 1: (7, "cd")}
