"""`gateway audit verify` says how old the checkpoint is, and `--max-age` refuses a stale one.

The age is the time the policy's quorum last cosigned (the witnesses' timestamps, which the
log cannot forge); with `--key` alone nothing dates the checkpoint, so `--max-age` refuses.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.audit import note, trust, verify
from gateway.audit.cosignature import Ed25519Cosigner
from gateway.cli import main
from gateway.db import Database
from tests.audit.test_verify import N, _leaves, log  # noqa: F401 - the log fixture

HOUR = 3600
DAY = 24 * HOUR


def _witness(name: str, ago: int) -> Ed25519Cosigner:
    moment = int(time.time()) - ago
    return Ed25519Cosigner(f"w.test/{name}", name.encode().ljust(32, b"\0"), lambda: moment)


def _cosigned(text: str, *witnesses: Ed25519Cosigner) -> str:
    body = text.partition("\n\n")[0] + "\n"
    return text + "".join(note.signature_line(w, body) for w in witnesses)


def _policy(tmp_path: Path, signer: note.Signer, quorum: str, *ws: Ed25519Cosigner) -> Path:
    lines = [f"log {signer.verifier_key}"]
    lines += [f"witness {w.name.split('/')[1]} {w.verifier_key}" for w in ws]
    lines += [f"group both {quorum} {' '.join(w.name.split('/')[1] for w in ws)}"] if ws else []
    lines += ["quorum both" if ws else "quorum none"]
    path = tmp_path / "auditor.policy"
    path.write_text("\n".join(lines) + "\n")
    return path


def _verify(tmp_path: Path, db: Database, checkpoint: str, *args: str) -> Result:
    export = tmp_path / "export.jsonl"
    export.write_text("".join(verify.export_lines(enumerate(_leaves(db)), checkpoint)))
    return CliRunner().invoke(main, ["audit", "verify", "--file", str(export), *args])


def _stamp(w: Ed25519Cosigner) -> str:
    return datetime.fromtimestamp(int(w._clock()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_verdict_says_when_the_quorum_cosigned(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811 - the imported fixture
) -> None:
    w1 = _witness("w1", 3 * HOUR)
    policy = _policy(tmp_path, signer, "any", w1)
    r = _verify(tmp_path, db, _cosigned(log[N], w1), "--policy", str(policy))
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        f"ok: {N} entries verify against the checkpoint of test.gateway/audit at size {N}; "
        f"cosigned by w1 at {_stamp(w1)} (3 h ago)\n"
    )
    j = _verify(tmp_path, db, _cosigned(log[N], w1), "--policy", str(policy), "--json")
    age = json.loads(j.stdout)["checkpoint_age"]
    assert age["time"] == _stamp(w1) and age["dated_by"] == "cosignature"
    assert age["cosigned_by"] == ["w1"] and 3 * HOUR <= age["seconds"] < 3 * HOUR + 60


def test_max_age_refuses_a_stale_checkpoint_in_one_line(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    w1 = _witness("w1", 3 * DAY)
    policy = str(_policy(tmp_path, signer, "any", w1))
    text = _cosigned(log[N], w1)
    stale = _verify(tmp_path, db, text, "--policy", policy, "--max-age", "24h")
    assert stale.exit_code == 1
    assert stale.stdout == (
        f"FAILED: the checkpoint is older than --max-age 1d: cosigned by w1 at {_stamp(w1)} "
        "(3 days ago)\n"
    )
    assert "Traceback" not in stale.output
    j = _verify(tmp_path, db, text, "--policy", policy, "--max-age", "24h", "--json")
    assert j.exit_code == 1 and json.loads(j.stdout)["checkpoint_age"]["seconds"] >= 3 * DAY
    fresh = _verify(tmp_path, db, text, "--policy", policy, "--max-age", "3d1h")
    assert fresh.exit_code == 0 and "(3 days ago)" in fresh.stdout, fresh.output


def test_the_age_is_the_quorums_not_the_freshest_witness(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    """With both witnesses required, a fresh w1 cannot vouch for what only w2 saw days ago."""
    w1, w2 = _witness("w1", HOUR), _witness("w2", 3 * DAY)
    text = _cosigned(log[N], w1, w2)
    both = _verify(
        tmp_path, db, text, "--policy", str(_policy(tmp_path, signer, "all", w1, w2)),
        "--max-age", "24h",
    )  # fmt: skip
    assert both.exit_code == 1 and f"cosigned by w1, w2 at {_stamp(w2)}" in both.stdout
    either = _verify(
        tmp_path, db, text, "--policy", str(_policy(tmp_path, signer, "any", w1, w2)),
        "--max-age", "24h",
    )  # fmt: skip
    assert either.exit_code == 0 and f"cosigned by w1 at {_stamp(w1)} (1 h ago)" in either.stdout


@pytest.mark.parametrize("how", ["key", "policy without witnesses"])
def test_nothing_dates_a_checkpoint_without_witnesses_so_max_age_refuses(
    how: str,
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    trusted = (
        ["--key", signer.verifier_key]
        if how == "key"
        else ["--policy", str(_policy(tmp_path, signer, "any"))]
    )
    plain = _verify(tmp_path, db, log[N], *trusted)
    assert plain.exit_code == 0 and "; its age is unknown: no witness cosignature" in plain.stdout
    asked = _verify(tmp_path, db, log[N], *trusted, "--max-age", "30m")
    assert asked.exit_code == 1, asked.output
    assert asked.stdout.startswith(
        "FAILED: the checkpoint's age cannot be checked against --max-age 30m: no witness "
    )


@pytest.mark.parametrize("value", ["24", "0s", "-1h", "h", "99999999d", "1y", "24 h"])
def test_a_bad_max_age_is_one_error_line(
    value: str,
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    r = _verify(tmp_path, db, log[N], "--key", signer.verifier_key, "--max-age", value)
    assert r.exit_code != 0 and r.stdout == ""
    assert r.stderr.startswith("gateway: error: --max-age") and r.stderr.count("\n") == 1, r.stderr


def test_quorum_time() -> None:
    w1, w2, w3 = (_witness(n, 0) for n in ("w1", "w2", "w3"))
    ws = {n: trust.PolicyWitness(n, note.parse_verifier_key(w.verifier_key)) for n, w in
          (("w1", w1), ("w2", w2), ("w3", w3))}  # fmt: skip
    two = trust.Policy((), ws, {"g": trust.Group("g", 2, ("w1", "w2", "w3"))}, "g")
    assert trust.quorum_time(two, {"w1": 30, "w2": 10, "w3": 20}) == (20, ("w1", "w3"))
    assert trust.quorum_time(two, {"w1": 30}) is None
    anyone = trust.Policy((), ws, {}, "none")
    assert trust.quorum_time(anyone, {"w2": 10, "w3": 20}) == (20, ("w3",))
    assert trust.quorum_time(anyone, {}) is None


def test_a_cosignature_dated_in_the_future_is_refused_not_taken_as_fresh(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    ahead = _witness("w1", -DAY)  # a witness whose clock, or whose forger, says tomorrow
    policy = str(_policy(tmp_path, signer, "any", ahead))
    text = _cosigned(log[N], ahead)
    for extra in ([], ["--max-age", "2h"]):
        r = _verify(tmp_path, db, text, "--policy", policy, *extra)
        assert r.exit_code == 1, r.output
        assert r.stdout.startswith("FAILED: a witness's cosignature is dated in the future")
        assert "Traceback" not in r.output
    slightly = _witness("w1", -60)  # a minute ahead: within the clock skew allowed
    ok = _verify(tmp_path, db, _cosigned(log[N], slightly), "--policy", policy, "--max-age", "2h")
    assert ok.exit_code == 0, ok.output
