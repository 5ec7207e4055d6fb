"""Verification under a C2SP tlog-policy, from C2SP tlog-tiles alone, and offline tlog-proofs.

Against the live gateway (no witnesses configured: its policy's quorum is ``none``):
``gateway audit policy`` prints the policy an auditor keeps; ``audit verify --policy``
accepts the checkpoint under it and refuses it under a policy whose witness did not
cosign; ``audit verify --tiles`` reads the tiles (a tampered tile fails where the listed
entries still verify, a tampered entry is named); ``audit proof`` writes a ``.tlog-proof``
that ``audit verify-proof`` checks with no gateway at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from gateway.audit import cosignature, store, tlogproof
from gateway.cli import main
from tests.cli.conftest import Live


def _operator_env(live: Live) -> dict[str, str]:
    config = live.rt.config
    return {
        "GATEWAY_DATABASE_URL": config.database.url,
        "GATEWAY_KEYS_DIR": config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(config.storage.root),
        "GATEWAY_AUDIT_ARCHIVE_DIR": config.audit.archive_dir,
        "GATEWAY_AUDIT_ORIGIN": config.audit.origin,
    }


@pytest.fixture
def policy(live: Live, tmp_path: Path) -> Path:
    """The gateway's own policy, as its operator prints it."""
    r = CliRunner(env=_operator_env(live)).invoke(main, ["audit", "policy"])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"log {live.rt.audit_signer.verifier_key}\nquorum none\n"
    path = tmp_path / "gateway.policy"
    path.write_text(r.stdout)
    return path


def _witnessed_policy(live: Live, tmp_path: Path) -> Path:
    """A policy that also wants a witness that never saw the log."""
    (made,) = [c for c in cosignature.create_cosigner_file(tmp_path / "w.key", "w.test/w1")][:1]
    path = tmp_path / "witnessed.policy"
    path.write_text(
        f"log {live.rt.audit_signer.verifier_key}\nwitness w1 {made.verifier.vkey}\nquorum w1\n"
    )
    return path


def test_verify_under_the_gateways_policy_and_a_stricter_one(
    live: Live, policy: Path, tmp_path: Path
) -> None:
    live.push()
    ok = live.gateway("auditor", "audit", "verify", "--policy", str(policy))
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: "), ok.output
    strict = live.gateway(
        "auditor", "audit", "verify", "--policy", str(_witnessed_policy(live, tmp_path))
    )
    assert strict.exit_code == 1, strict.output
    assert strict.stdout.startswith("FAILED: the checkpoint does not meet the policy: quorum w1")
    neither = live.gateway("auditor", "audit", "verify")
    assert neither.exit_code == 1 and "--key" in neither.stderr and "--policy" in neither.stderr


def test_verify_from_tiles_alone(live: Live, tmp_path: Path) -> None:
    live.push()
    vkey = live.rt.audit_signer.verifier_key
    ok = live.gateway("auditor", "audit", "verify", "--tiles", "--key", vkey)
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: "), ok.output
    with live.rt.db.session() as s:  # a stored hash the tiles serve, not the leaves
        s.execute(update(store.Subtree).where(store.Subtree.level == 0, store.Subtree.index == 0)
                  .values(hash=bytes(32)))  # fmt: skip
    tiles = live.gateway("auditor", "audit", "verify", "--tiles", "--key", vkey)
    assert tiles.exit_code == 1 and "tiles do not match its checkpoint" in tiles.stderr, (
        tiles.output
    )
    listed = live.gateway("auditor", "audit", "verify", "--key", vkey)
    assert listed.exit_code == 0, listed.output  # the entries API never read that hash


def test_entry_bundles_are_for_auditors(live: Live) -> None:
    live.push()
    lab = live.gateway(
        "lab", "audit", "verify", "--tiles", "--key", live.rt.audit_signer.verifier_key
    )
    assert lab.exit_code == 1 and "entry bundles" in lab.stderr, lab.output


def test_verify_from_tiles_names_a_rewritten_entry(live: Live) -> None:
    live.push()
    vkey = live.rt.audit_signer.verifier_key
    with live.rt.db.session() as s:
        store.integrate(s)  # the entry to rewrite is in the tree
        s.execute(update(store.Entry).where(store.Entry.index == 1).values(leaf=b"{}"))
    r = live.gateway("auditor", "audit", "verify", "--tiles", "--key", vkey)
    assert r.exit_code == 1 and "first bad entry: 1" in r.stdout, r.output


def test_a_proof_verifies_offline_and_only_for_its_entry(
    live: Live, policy: Path, tmp_path: Path
) -> None:
    live.push()
    mine = live.call("lab", "GET", "/v1/audit/entries")["items"]
    index = mine[-1]["index"]
    path = tmp_path / "entry.tlog-proof"
    made = live.gateway("lab", "audit", "proof", str(index), "-o", str(path))
    assert made.exit_code == 0, made.output
    assert tlogproof.read_proof(path).index == index
    again = live.gateway("lab", "audit", "proof", str(index), "-o", str(path))
    assert again.exit_code == 1 and "exists" in again.stderr
    ok = live.gateway(None, "audit", "verify-proof", str(path), "--policy", str(policy))
    action = mine[-1]["entry"]["action"]
    assert ok.exit_code == 0 and ok.stdout.startswith(f"ok: entry {index} ({action} by "), ok.output
    other = tmp_path / "other.leaf"
    other.write_bytes(b'{"action":"key.release"}')
    forged = live.gateway(
        None, "audit", "verify-proof", str(path), "--policy", str(policy), "--entry", str(other)
    )
    assert forged.exit_code == 1 and forged.stdout.startswith(
        f"FAILED: entry {index} is not proven"
    )
    strict = _witnessed_policy(live, tmp_path)
    unwitnessed = live.gateway(None, "audit", "verify-proof", str(path), "--policy", str(strict))
    assert unwitnessed.exit_code == 1 and "quorum w1" in unwitnessed.stdout


def test_a_proof_only_of_an_entry_the_principal_may_see(live: Live, tmp_path: Path) -> None:
    live.push()
    # an entry about the evaluator's agency alone: its refusal to do a lab's work
    refused = live.app.test_client().get(
        "/v1/uploads/upl_none", headers=live.principals.auth("eval")
    )
    assert refused.status_code in (403, 404)
    mine = {e["index"] for e in live.call("lab", "GET", "/v1/audit/entries")["items"]}
    every = live.call("auditor", "GET", "/v1/audit/entries")["items"]
    foreign = next(e["index"] for e in every if e["index"] not in mine)
    path = tmp_path / "foreign.tlog-proof"
    r = live.gateway("lab", "audit", "proof", str(foreign), "-o", str(path))
    assert r.exit_code == 1 and f"entry {foreign} is not one you may see" in r.stderr, r.output
    assert not path.exists()
