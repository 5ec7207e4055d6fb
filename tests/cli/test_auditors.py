"""Auditors are not misled: saved files are kept, the verifier key is one command away and
every command takes it the same ways."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.services import anchor
from tests.cli.conftest import Live


def test_a_saved_checkpoint_is_not_overwritten_without_force(live: Live, tmp_path: Path) -> None:
    saved = tmp_path / "cp1.checkpoint"
    first = live.gateway("auditor", "audit", "checkpoint", "--save", str(saved))
    assert first.exit_code == 0, first.output
    kept = saved.read_text()
    live.push(b"w")  # the log grows
    again = live.gateway("auditor", "audit", "checkpoint", "--save", str(saved))
    assert again.exit_code == 1 and again.stderr.splitlines() == [
        f"gateway: error: {saved} exists",
        "gateway: hint: pass --force to replace it",
    ]
    assert saved.read_text() == kept
    forced = live.gateway("auditor", "audit", "checkpoint", "--save", str(saved), "--force")
    assert forced.exit_code == 0 and saved.read_text() != kept


def test_the_verifier_key_is_fetched_through_the_profile_and_taken_from_a_file(
    live: Live, tmp_path: Path
) -> None:
    token = live.principals.tokens["auditor"] + "\n"
    assert (
        live.gateway(None, "profile", "set", "aud", "--url", live.url, input=token).exit_code == 0
    )
    vkey = tmp_path / "audit.vkey"
    fetched = live.gateway(None, "audit", "key", "-o", str(vkey), "--profile", "aud")
    assert fetched.exit_code == 0, fetched.output
    assert vkey.read_text() == live.rt.audit_signer.verifier_key + "\n"
    assert "check it against the key the gateway's operator published" in fetched.stderr
    again = live.gateway(None, "audit", "key", "-o", str(vkey), "--profile", "aud")
    assert again.exit_code == 1 and "exists" in again.stderr
    printed = live.gateway(None, "audit", "key", "--profile", "aud")
    assert printed.stdout == live.rt.audit_signer.verifier_key + "\n"
    for key in (str(vkey), live.rt.audit_signer.verifier_key):
        verified = live.gateway(None, "audit", "verify", "--key", key, "--profile", "aud")
        assert verified.exit_code == 0 and verified.stdout.startswith("ok: "), verified.output
        checked = live.gateway(None, "audit", "checkpoint", "--key", key, "--profile", "aud")
        assert checked.exit_code == 0, checked.output


def test_anchors_take_the_verifier_key_as_a_file_too(live: Live, tmp_path: Path) -> None:
    live.push(b"w")
    anchor.publish(live.rt, force=True)
    vkey = tmp_path / "audit.vkey"
    vkey.write_text(live.rt.audit_signer.verifier_key + "\n")
    config = live.rt.config
    env = {
        "GATEWAY_DATABASE_URL": config.database.url,
        "GATEWAY_KEYS_DIR": config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(config.storage.root),
        "GATEWAY_AUDIT_ARCHIVE_DIR": config.audit.archive_dir,
        "GATEWAY_AUDIT_ORIGIN": config.audit.origin,
    }
    for key in (str(vkey), live.rt.audit_signer.verifier_key):
        done = CliRunner(env=env).invoke(main, ["audit", "anchors", "--key", key])
        assert done.exit_code == 0 and done.stdout.startswith("OK: "), done.output
    bad = CliRunner(env=env).invoke(main, ["audit", "anchors", "--key", str(tmp_path / "none")])
    assert bad.exit_code == 1 and "neither a verifier key nor a file holding one" in bad.stderr
