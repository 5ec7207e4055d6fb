"""What the log says about identities: an evaluator's recipients in whoami, a lab's signing keys."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import update

from gateway import age
from gateway.audit import note
from gateway.models import Principal
from tests.cli.conftest import Live, actions


def test_whoami_shows_the_recipients_on_record_and_sees_a_substituted_one(
    live: Live, evaluator_key: Path
) -> None:
    served = live.app.test_client().get("/v1/audit/key").get_data(as_text=True).strip()
    done = live.gateway("eval", "whoami", "--json", GATEWAY_AUDIT_KEY=served)
    assert done.exit_code == 0 and done.stderr == "", done.output
    me = json.loads(done.stdout)
    (registered,) = me["recipient_history"]
    assert registered["recipient"] == me["recipient"] and registered["replaced"] is None
    assert actions(live.rt)[registered["index"]] == "identity.recipient.set"
    assert "on record:   " + me["recipient"] in live.gateway("eval", "whoami").stdout

    # The recipient swapped under the evaluator, with no entry: whoami says so.
    other = str(age.X25519Identity.generate().to_recipient())
    with live.rt.db.session() as session:
        session.execute(update(Principal).where(Principal.id == me["id"]).values(recipient=other))
    done = live.gateway("eval", "whoami", GATEWAY_AUDIT_KEY=served)
    assert done.exit_code == 0, done.output
    assert done.stderr == (
        f"gateway: warning: the gateway holds recipient {other}, but the last one the audit "
        f"log records you registering is {me['recipient']} (log size {len(actions(live.rt))})\n"
    )


def test_whoami_refuses_a_checkpoint_signed_by_another_key(live: Live, evaluator_key: Path) -> None:
    served = live.app.test_client().get("/v1/audit/key").get_data(as_text=True).strip()
    name = served.split("+")[0]
    impostor = note.Signer.generate(name).verifier_key
    done = live.gateway("eval", "whoami", GATEWAY_AUDIT_KEY=impostor)
    assert done.exit_code == 1 and done.stdout == "", done.output
    assert done.stderr.startswith("gateway: error: "), done.stderr


def test_a_lab_registers_lists_and_revokes_a_signing_key_with_the_cli(
    live: Live, tmp_path: Path
) -> None:
    path = tmp_path / "second.key"
    made = live.gateway("lab", "keygen", "--type", "signing", "--no-register", "-o", str(path))
    assert made.exit_code == 0, made.output
    public = made.stdout.strip()
    done = live.gateway("lab", "signing-key", "register", "-k", str(path))
    assert done.exit_code == 0 and done.stdout.strip() == public, done.output
    listed = json.loads(live.gateway("lab", "signing-key", "list", "--json").stdout)
    assert public in [k["public_key"] for k in listed]
    assert live.gateway("eval", "signing-key", "revoke", public).exit_code == 1
    done = live.gateway("lab", "signing-key", "revoke", public)
    assert done.exit_code == 0, done.output
    (revoked,) = [
        k
        for k in json.loads(live.gateway("lab", "signing-key", "list", "--json").stdout)
        if k["public_key"] == public
    ]
    assert revoked["revoked_at"]
    again = live.gateway("lab", "signing-key", "register", "-k", str(path))
    assert again.exit_code == 1 and "revoked" in again.stderr, again.output
    assert actions(live.rt).count("identity.signing_key.register") == 2  # the fixture's, this one
    assert actions(live.rt).count("identity.signing_key.revoke") == 1
