"""Push state files: private, found again by file or upload id, gone after completion."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.client import state
from gateway.client.errors import PushStateError
from gateway.client.state import FileIdentity, PushState


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def _state(path: Path, upload: str = "up_1") -> PushState:
    return PushState(
        gateway="http://gw",
        upload=upload,
        file=FileIdentity.of(path),
        name="w",
        kind="weights",
        part_size=8 << 20,
        header="aGVhZGVy",
        nonce="A" * 22 + "==",
        file_key="S" * 22 + "==",
    )


def test_saved_state_is_private_and_found_again(tmp_path: Path, config_home: Path) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(b"x" * 100)
    saved = _state(data)
    where = state.save(saved)
    assert where.parent == config_home / "gateway" / "pushes"
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert state.load("http://gw", str(data.resolve())) == saved
    assert state.find("up_1") == saved
    assert state.load("http://other", str(data.resolve())) is None
    assert "S" * 22 not in repr(saved)


def test_deleting_forgets_the_file_key(tmp_path: Path) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(b"x")
    saved = _state(data)
    where = state.save(saved)
    state.delete(saved)
    assert not where.exists()
    with pytest.raises(PushStateError, match="no interrupted push of upload up_1"):
        state.find("up_1")


def test_file_identity_notices_a_changed_file(tmp_path: Path) -> None:
    data = tmp_path / "weights.bin"
    data.write_bytes(b"x" * 100)
    before = FileIdentity.of(data)
    data.write_bytes(b"y" * 101)
    assert FileIdentity.of(data) != before
