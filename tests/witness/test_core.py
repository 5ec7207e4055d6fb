"""The witness's decisions and state, in process: durability, fail-closed state, key names."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.audit import note, trust
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.audit.witness import format_add_checkpoint, parse_cosignatures
from gateway.witness.app import WitnessApp, max_body_limit
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
    log = TestLog()
    leftover = tmp_path / "checkpoints" / f".{origin_hash(log.origin)}.1234abcd.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half")
    w = _witness(tmp_path, log)
    log.grow(1)
    w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    assert os.listdir(tmp_path / "checkpoints") == [origin_hash(log.origin)]
    assert w.checkpoint("0" * 64) is None
    assert w.state.read("../etc/passwd") is None


def test_starting_leaves_another_processs_file_in_flight_alone(tmp_path: Path) -> None:
    """A second witness process (a restarted worker) must not delete a write under way."""
    log = TestLog()
    first = _witness(tmp_path, log)
    in_flight = tmp_path / "checkpoints" / f".{origin_hash(log.origin)}.5678abcd.tmp"
    with first.state.locked(log.origin):
        in_flight.write_bytes(b"being written")  # as LogState.replace does, under the lock
        _witness(tmp_path, log)
        assert in_flight.read_bytes() == b"being written"


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


def _policy(log: TestLog, w: Witness) -> trust.Policy:
    """The log and the witness's ML-DSA-44 key (its Ed25519 seed is the log's, in these tests)."""
    mldsa = w.cosigners[0].verifier_key
    return trust.parse_policy(f"log {log.vkey}\nwitness w {mldsa}\nquorum w\n")


def _status(call: Callable[[], object]) -> int:
    with pytest.raises(Refusal) as refused:
        call()
    return refused.value.status


def _bogus_line(log: TestLog, length: int = 64) -> str:
    raw = log.signer.key_id + bytes(length)
    return note.SIG_PREFIX + log.origin + " " + base64.b64encode(raw).decode() + "\n"


def test_a_bad_line_by_the_logs_key_is_refused_and_nothing_stored_changes(tmp_path: Path) -> None:
    """tlog-witness: every line by a trusted key must verify; a bad one is a 403."""
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(5)
    w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    before = w.checkpoint(origin_hash(log.origin))

    poisoned = log.checkpoint() + _bogus_line(log)
    assert _status(lambda: w.add_checkpoint(format_add_checkpoint(5, [], poisoned))) == 403
    log.grow(1)
    grown = log.checkpoint() + _bogus_line(log)
    assert _status(lambda: w.add_checkpoint(format_add_checkpoint(5, log.proof(5), grown))) == 403

    served = w.checkpoint(origin_hash(log.origin))
    assert served == before and served is not None
    assert trust.verify_checkpoint(served, _policy(log, w)).checkpoint.size == 5


def test_a_repeated_line_of_the_logs_key_is_stored_once(tmp_path: Path) -> None:
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(3)
    line = log.checkpoint().split("\n\n", 1)[1]
    w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint() + line + line))
    served = w.checkpoint(origin_hash(log.origin))
    assert served is not None and served.decode().count(line) == 1
    trust.verify_checkpoint(served, _policy(log, w))


def test_a_checkpoint_whose_text_is_not_canonical_is_refused(tmp_path: Path) -> None:
    """A root in non-canonical base64 would be cosigned re-encoded, breaking the log's signature."""
    log = TestLog()
    w = _witness(tmp_path, log)
    log.grow(3)
    origin, size, root, _ = note.parse_note(log.checkpoint())[0].split("\n")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = root[:-2] + alphabet[alphabet.index(root[-2]) ^ 1] + "="
    assert odd != root and base64.b64decode(odd) == base64.b64decode(root)
    signed = note.sign_note(f"{origin}\n{size}\n{odd}\n", log.signer)

    assert _status(lambda: w.add_checkpoint(format_add_checkpoint(0, [], signed))) == 400
    assert w.checkpoint(origin_hash(log.origin)) is None


def test_a_replay_gets_the_stored_cosignatures_with_nothing_signed_or_written(
    tmp_path: Path,
) -> None:
    log = TestLog()
    signed: list[float] = []

    def clock() -> float:
        signed.append(1.0)
        return 1_700_000_000.0

    cosigners = [
        MLDSA44Cosigner("w.test", bytes(32), clock),
        Ed25519Cosigner("w.test", bytes(32), clock),
    ]
    w = Witness(cosigners, parse_log_list(f"logs/v0\nvkey {log.vkey}\n"), StateDir(tmp_path))
    log.grow(4)
    first = w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    path = tmp_path / "checkpoints" / origin_hash(log.origin)
    inode, count = path.stat().st_ino, len(signed)

    for _ in range(3):
        assert w.add_checkpoint(format_add_checkpoint(4, [], log.checkpoint())) == first
    assert (path.stat().st_ino, len(signed)) == (inode, count)
    assert len(parse_cosignatures(log.checkpoint(), first, [c.verifier for c in cosigners])) == 2


def test_a_logs_qpd_bounds_its_new_cosignatures_but_not_its_replays(tmp_path: Path) -> None:
    log = TestLog()
    now = [0.0]
    cosigners = [Ed25519Cosigner("w.test", bytes(32))]
    logs = parse_log_list(f"logs/v0\nvkey {log.vkey}\nqpd 24\n")  # one an hour
    w = Witness(cosigners, logs, StateDir(tmp_path), clock=lambda: now[0])
    log.grow(2)
    w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    log.grow(2)
    grown = format_add_checkpoint(2, log.proof(2), log.checkpoint())

    with pytest.raises(Refusal) as refused:
        w.add_checkpoint(grown)
    assert refused.value.status == 429
    assert dict(refused.value.headers) == {"Retry-After": "3600"}
    w.add_checkpoint(format_add_checkpoint(2, [], log.checkpoint(2)))  # a replay spends nothing
    now[0] += 3600
    assert w.add_checkpoint(grown)
    served = w.checkpoint(origin_hash(log.origin))
    assert served is not None and note.open_checkpoint(served, [log.vkey]).size == 4


def test_an_origin_a_cosigner_cannot_name_is_refused_at_start(tmp_path: Path) -> None:
    log = TestLog()
    long = "o" * 256
    logs = parse_log_list(f"logs/v0\nvkey {log.vkey}\norigin {long}\n")
    with pytest.raises(ValueError, match="255 bytes"):
        _witness(tmp_path, log).__class__(
            [MLDSA44Cosigner("w.test", bytes(32))], logs, StateDir(tmp_path)
        )
    Witness([Ed25519Cosigner("w.test", bytes(32))], logs, StateDir(tmp_path))  # no such limit


def test_a_cosigned_checkpoint_over_the_state_limit_is_refused_and_not_stored(
    tmp_path: Path,
) -> None:
    log = TestLog()
    cosigners = [MLDSA44Cosigner("w.test", bytes(32)), Ed25519Cosigner("w.test", bytes(32))]
    logs = parse_log_list(f"logs/v0\nvkey {log.vkey}\n")
    w = Witness(cosigners, logs, StateDir(tmp_path, max_bytes=2048))  # ML-DSA lines are ~3.3 KB
    log.grow(2)
    assert _status(lambda: w.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))) == 413
    assert w.checkpoint(origin_hash(log.origin)) is None


def _post(app: WitnessApp, body: bytes, length: str | None = None) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/add-checkpoint",
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "wsgi.input": io.BytesIO(body),
    }
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], out


def test_the_body_limit_stays_under_the_state_limit_and_a_big_poisoned_body_is_refused(
    tmp_path: Path,
) -> None:
    log = TestLog()
    w = _witness(tmp_path, log)
    with pytest.raises(ValueError, match="largest request body"):
        WitnessApp(w, max_body=4 << 20)
    app = WitnessApp(w, max_body=max_body_limit(w.state.max_bytes))
    log.grow(5)
    big = "".join(_bogus_line(log, 15000) for _ in range(25))
    status, _ = _post(app, format_add_checkpoint(0, [], log.checkpoint() + big))
    assert status.startswith("403")
    log.grow(3)
    status, _ = _post(app, format_add_checkpoint(0, [], log.checkpoint()))
    assert status.startswith("200")


@pytest.mark.parametrize(
    ("length", "status"),
    [("9" * 5000, "413"), ("9" * 20, "413"), ("12a", "400"), ("\u00b2", "400")],
)
def test_a_content_length_that_is_not_a_size_is_refused(
    tmp_path: Path, length: str, status: str
) -> None:
    app = WitnessApp(_witness(tmp_path, TestLog()))
    assert _post(app, b"old 0\n\n", length)[0].startswith(status)
