"""An interrupted push resumes only under the custody it was begun with.

A lab-custody push resumed as a plain one would complete without recording its header
for ``approve -i``, and a plain push resumed with ``--custody lab`` would record a header
the gateway holds a key for: both are refused in one line, before anything is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.client import dirpush, state
from gateway.client import push as pushing
from gateway.client.errors import PushError


@dataclass
class NoGateway:
    """Answers nothing: the refusal comes before any request."""

    url: str = "http://gw.test"


def saved_for(req: pushing.PushRequest, ident: state.FileIdentity, custody: str) -> None:
    state.save(
        state.PushState(
            gateway=NoGateway.url,
            upload="upl_1",
            file=ident,
            name=req.name,
            kind=req.kind,
            part_size=1 << 20,
            header="",
            nonce="",
            file_key="",
            custody=custody,
        )
    )


@pytest.mark.parametrize(("begun", "now"), [("lab", "gateway"), ("gateway", "lab")])
def test_a_push_resumed_under_another_custody_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, begun: str, now: str
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w" * 100)
    req = pushing.PushRequest(
        path=weights, name="w", kind="weights", share_with=("agency-a",), custody=now
    )
    saved_for(req, req.identity(), begun)
    for resume in (None, "upl_1"):
        with pytest.raises(PushError) as refused:
            pushing.start_or_resume(NoGateway(), req, resume=resume)  # type: ignore[arg-type]
        assert f"was begun under {begun} custody, not {now}" in refused.value.detail
        assert (
            refused.value.hint is not None and "gateway uploads abort upl_1" in refused.value.hint
        )
    assert state.load(NoGateway.url, str(weights)) is not None  # the state is kept


def test_a_directory_push_resumed_under_another_custody_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    req = pushing.PushRequest(path=model, name="m", kind="weights", share_with=("agency-a",))
    planned = dirpush.plan(req)
    saved_for(req, dirpush.identity(planned), "lab")
    with pytest.raises(PushError, match="begun under lab custody, not gateway"):
        dirpush.start_or_resume(NoGateway(), req, planned)  # type: ignore[arg-type]


def test_a_push_state_saved_before_custody_was_recorded_is_gateway_custody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ident = state.FileIdentity(path=str(tmp_path / "w.bin"), size=1, mtime_ns=0, inode=0)
    req = pushing.PushRequest(path=tmp_path / "w.bin", name="w", kind="weights", share_with=())
    saved_for(req, ident, "gateway")
    path = state.state_path(NoGateway.url, ident.path)
    older = json.loads(path.read_text())
    del older["custody"]
    path.write_text(json.dumps(older))
    loaded = state.load(NoGateway.url, ident.path)
    assert loaded is not None and loaded.custody == "gateway"
