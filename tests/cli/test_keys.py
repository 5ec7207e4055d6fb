"""Keys recovered and rotated on purpose: no keygen strands a grant, no push sends parts in vain."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Live, actions


def _recipient(live: Live) -> str | None:
    return live.call("eval", "GET", "/v1/me")["recipient"]  # type: ignore[no-any-return]


def _released(live: Live, evaluator_key: Path, tmp_path: Path) -> tuple[str, str]:
    """An artifact whose grant already released its key to eval's first recipient."""
    artifact = live.push(b"credential: 42", name="endpoint", kind="credential")
    grant = live.grant(artifact["id"])
    done = live.gateway("eval", "pull", artifact["id"], "-o", "-", "-i", str(evaluator_key))
    assert done.exit_code == 0 and done.stdout == "credential: 42", done.output
    return str(artifact["id"]), str(grant["id"])


def test_a_second_keygen_asks_before_stranding_a_released_grant(
    live: Live, evaluator_key: Path, tmp_path: Path
) -> None:
    _, grant = _released(live, evaluator_key, tmp_path)
    first = _recipient(live)
    new = tmp_path / "eval-new.agekey"
    done = live.gateway("eval", "keygen", "-o", str(new))
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        "gateway: error: the registered recipient was not replaced: this asks for "
        "confirmation, and there is no terminal to ask at",
        "gateway: hint: pass --yes to go ahead without being asked",
    ]
    assert _recipient(live) == first and not new.exists()
    replaced = live.gateway("eval", "keygen", "-o", str(new), "--yes")
    assert replaced.exit_code == 0, replaced.output
    assert _recipient(live) == replaced.stdout.strip() != first
    assert grant  # the grant it warned about is still there to recover


def test_register_existing_is_the_way_back_to_a_grant_whose_key_went_to_the_old_recipient(
    live: Live, evaluator_key: Path, tmp_path: Path
) -> None:
    artifact, grant = _released(live, evaluator_key, tmp_path)
    first = _recipient(live)
    new = tmp_path / "eval-new.agekey"
    assert live.gateway("eval", "keygen", "-o", str(new), "--yes").exit_code == 0
    stuck = live.gateway("eval", "pull", artifact, "-o", "-", "-i", str(new))
    assert stuck.exit_code == 1
    assert stuck.stderr.splitlines()[0] == (
        f"gateway: error: the key of grant {grant} was released to {first}, which {new} does not hold"
    )
    again = live.gateway("eval", "pull", artifact, "-o", "-", "-i", str(evaluator_key))
    assert again.exit_code == 1
    assert f"register it again, then pull: gateway keygen --register-existing {evaluator_key}" in (
        again.stderr
    )
    asked = live.gateway("eval", "request", artifact, "--justification", "again")
    assert (
        asked.exit_code == 1 and f"grant {grant} on this artifact is still active" in asked.stderr
    )
    assert "gateway keygen --register-existing FILE" in asked.stderr and f"revoke {grant}" in (
        asked.stderr
    )
    back = live.gateway("eval", "keygen", "--register-existing", str(evaluator_key), "--yes")
    assert back.exit_code == 0, back.output
    assert _recipient(live) == first
    pulled = live.gateway("eval", "pull", artifact, "-o", "-", "-i", str(evaluator_key))
    assert pulled.exit_code == 0 and pulled.stdout == "credential: 42", pulled.output


def test_push_refuses_an_unregistered_signing_key_before_sending_a_part(
    live: Live, tmp_path: Path
) -> None:
    key = tmp_path / "unregistered.key"
    assert (
        live.gateway(
            "lab", "keygen", "--type", "signing", "--no-register", "-o", str(key)
        ).exit_code
        == 0
    )
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 100_000)
    args = ["push", str(weights), "--share-with", "agency-a", "--signing-key", str(key)]
    done = live.gateway("lab", *args)
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        f"gateway: error: {key} is not a signing key registered for lab-a: the gateway would "
        "refuse the upload once every part was sent",
        f"gateway: hint: register it first: gateway keygen --register-existing {key}",
    ]
    assert "upload.create" not in actions(live.rt), "no upload was even begun"
    registered = live.gateway("lab", "keygen", "--register-existing", str(key))
    assert registered.exit_code == 0, registered.output
    pushed = live.gateway("lab", *args, "--quiet")
    assert pushed.exit_code == 0, pushed.output


def test_register_existing_refuses_a_key_of_another_role(live: Live, tmp_path: Path) -> None:
    key = tmp_path / "lab.key"
    assert (
        live.gateway(
            "lab", "keygen", "--type", "signing", "--no-register", "-o", str(key)
        ).exit_code
        == 0
    )
    done = live.gateway("eval", "keygen", "--register-existing", str(key))
    assert done.exit_code == 1
    assert done.stderr == (
        f"gateway: error: {key} holds a signing key, which an evaluator does not register\n"
    )
