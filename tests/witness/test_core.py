"""The witness's decisions and state, in process: durability, fail-closed state, key names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.audit import note
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.audit.witness import format_add_checkpoint, parse_cosignatures
from gateway.witness.core import Refusal, Witness
from gateway.witness.loglist import parse_log_list
from gateway.witness.state import StateDir, origin_hash
from tests.witness.conftest import TestLog


def _witness(root: Path, log: TestLog) -> Witness:
    cosigners = [MLDSA44Cosigner("w.test", bytes(32)), Ed25519Cosigner("w.test", bytes(32))]
    return Witness(cosigners, parse_log_list(f"logs/v0\nvkey {log.vkey}\n"), StateDir(root))


def test_state_is_written_atomically_and_holds_what_is_served(tmp_path: Path) -> None:
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(3)
    lines = w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    stored = (tmp_path / "checkpoints" / origin_hash(log.origin)).read_bytes()
    assert stored == log.checkpoint().encode() + lines
    assert w.checkpoint(origin_hash(log.origin)) == stored
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [origin_hash(log.origin)]
    assert len(parse_cosignatures(log.checkpoint(), lines, [c.verifier for c in w.cosigners])) == 2


def test_unverified_signatures_are_not_stored(tmp_path: Path) -> None:
    """Only the log signatures the witness verified go into what it serves."""
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(2)
    stranger = note.Signer(log.origin, bytes([9]) * 32)
    submitted = log.checkpoint() + note.signature_line(
        stranger, log.checkpoint().split("\n\n")[0] + "\n"
    )
    w.add_checkpoint(format_add_checkpoint(0, [], submitted))
    served = w.checkpoint(origin_hash(log.origin))
    assert served is not None and stranger.key_id.hex() not in served.decode()
    assert note.open_note(served, [log.vkey]).unverified[0].name == "w.test"  # only its own lines


def test_damaged_state_fails_closed(tmp_path: Path) -> None:
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(2)
    w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    path = tmp_path / "checkpoints" / origin_hash(log.origin)
    path.write_bytes(path.read_bytes().replace(b"\n2\n", b"\n1\n"))
    log.grow(2)
    with pytest.raises(Refusal) as err:
        w.add_checkpoint(format_add_checkpoint(2, log.proof(2), log.checkpoint()))
    assert err.value.status == 500
    with pytest.raises(Refusal):
        w.checkpoint(origin_hash(log.origin))


def test_a_crash_leftover_is_cleaned_and_unknown_hashes_are_not_found(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".abc.1234.tmp").write_bytes(b"half")
    w = _witness(tmp_path, TestLog())
    assert list((tmp_path / "checkpoints").iterdir()) == []
    assert w.checkpoint("0" * 64) is None
    assert w.state.read("../etc/passwd") is None


def test_witness_configuration_is_checked(tmp_path: Path) -> None:
    log = TestLog()
    logs = parse_log_list(f"logs/v0\nvkey {log.vkey}\n")
    with pytest.raises(ValueError, match="at least one"):
        Witness([], logs, StateDir(tmp_path))
    with pytest.raises(ValueError, match="one name"):
        Witness(
            [Ed25519Cosigner("a", bytes(32)), MLDSA44Cosigner("b", bytes(32))],
            logs,
            StateDir(tmp_path),
        )
    with pytest.raises(ValueError, match="own name"):
        Witness([Ed25519Cosigner(log.origin, bytes(32))], logs, StateDir(tmp_path))
