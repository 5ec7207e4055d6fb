"""What a lab-custody push that stopped midway says: a resume command that stays lab custody."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.client import labpush
from gateway.client import push as pushing
from gateway.client.http import ApiError

LAB = "age1ag6f24qqf6qafxe9nsz9687aax3vwtaagajcau5g5atsaq3s7yqscdw7g7"


def stopped_run() -> pushing.PushRun:
    saved: Any = SimpleNamespace(upload="upl_1234", file=SimpleNamespace(path="model"))
    return pushing.PushRun(saved=saved, parts=8)


def options(profile: str | None = None) -> dict[str, Any]:
    return {"signing_key": Path("lab.key"), "profile": profile, "recipients": (LAB,)}


@pytest.mark.parametrize(
    "exc",
    [ApiError("connection reset"), ApiError("no room", status=507), KeyboardInterrupt()],
    ids=["dropped", "out-of-space", "interrupted"],
)
def test_the_resume_command_keeps_custody_lab_and_the_recipients(exc: BaseException) -> None:
    said = labpush.stopped(exc, stopped_run(), options("work"))
    resume = shlex.join(
        ["gateway", "push", "--resume", "upl_1234", "--custody", "lab", "-r", LAB]
        + ["--signing-key", "lab.key", "--profile", "work"]
    )
    assert said.hint is not None and f"`{resume}`" in said.hint, said.hint
    assert "upload upl_1234 holds 0 of 8 parts" in said.detail


def test_a_push_that_never_began_says_only_what_stopped_it() -> None:
    said = labpush.stopped(ApiError("connection refused"), pushing.PushRun(), options())
    assert said.detail == "connection refused" and said.hint is None
