"""Pull against the real gateway: first use said, --expect-org, revocations reach the pins."""

from __future__ import annotations

from pathlib import Path

from gateway.client.keys import fingerprint
from gateway.manifest import public_key_b64
from tests.cli.conftest import Live


def _pull(live: Live, artifact: str, out: Path, *extra: str) -> tuple[int, str]:
    done = live.gateway("eval", "pull", artifact, "-o", str(out), "--raw", *extra)
    return done.exit_code, done.stderr


def test_first_use_names_the_org_and_fingerprint_and_expect_org_binds_it(
    live: Live, tmp_path: Path, evaluator_key: Path
) -> None:
    artifact = live.push(b"weights")["id"]
    live.grant(artifact)
    code, err = _pull(live, artifact, tmp_path / "a", "--expect-org", "lab-b")
    assert code == 1 and f"artifact {artifact} is lab-a's, not lab-b's" in err, err
    assert not (live.home / "gateway" / "known_keys.json").exists(), "nothing pinned"
    code, err = _pull(live, artifact, tmp_path / "b", "--expect-org", "lab-a")
    assert code == 0, err
    shown = fingerprint(public_key_b64(live.lab_key))
    assert f"gateway: note: first use of lab-a at {live.url}: pinned its signing key {shown}" in (
        err
    )
    code, err = _pull(live, artifact, tmp_path / "c")
    assert code == 0 and "note:" not in err, err


def test_a_revoked_signing_key_is_refused_on_a_machine_that_pinned_it(
    live: Live, tmp_path: Path, evaluator_key: Path
) -> None:
    artifact = live.push(b"weights")["id"]
    live.grant(artifact)
    code, err = _pull(live, artifact, tmp_path / "a")
    assert code == 0, err
    (mine,) = live.call("lab", "GET", "/v1/me/signing-keys")["items"]
    live.call("lab", "DELETE", f"/v1/me/signing-keys/{mine['id']}")
    listed = live.call("eval", "GET", "/v1/orgs/lab-a/signing-keys")
    assert listed["items"] == [] and [k["public_key"] for k in listed["revoked"]] == [
        mine["public_key"]
    ]
    assert listed["revoked"][0]["revoked_at"]
    code, err = _pull(live, artifact, tmp_path / "b", "--trust-new-key")
    assert code == 1 and "no longer in force" in err, err
    assert fingerprint(mine["public_key"]) in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
