"""`gateway audit verify` online: the age of the gateway's checkpoint, and `--max-age`.

The live gateway has no witness (its policy's quorum is ``none``), so nothing dates its
checkpoint: the verdict says so, and `--max-age` refuses rather than pass it unchecked.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Live
from tests.cli.test_audit_trust import policy  # noqa: F401 - the policy fixture


def test_an_undated_checkpoint_is_said_and_refused_under_max_age(
    live: Live,
    policy: Path,  # noqa: F811 - the imported fixture
) -> None:
    live.push()
    vkey = live.rt.audit_signer.verifier_key
    for trusted in (["--key", vkey], ["--policy", str(policy)]):
        ok = live.gateway("auditor", "audit", "verify", *trusted)
        assert ok.exit_code == 0 and "; its age is unknown: no witness cosignature" in ok.stdout
        stale = live.gateway("auditor", "audit", "verify", *trusted, "--max-age", "24h")
        assert stale.exit_code == 1, stale.output
        assert stale.stdout.startswith(
            "FAILED: the checkpoint's age cannot be checked against --max-age 1d"
        ), stale.output
        assert stale.stderr == "gateway: error: the audit log does not verify\n"
