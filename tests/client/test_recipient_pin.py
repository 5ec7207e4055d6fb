"""A lab-custody approval wraps the file key only for a recipient the log shows the evaluator
registered, and only for the evaluator this machine knows under that name.

The CLI runs against the real app (``tests.cli.conftest.Live``): the lab's `gateway approve
-i` reads the custody material, the audit entries (with proofs under the checkpoint, the
log's key given as ``GATEWAY_AUDIT_KEY``) and posts the approval. The insider who rewrites
the database is simulated with SQL in the test.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway import age
from gateway.client import trust
from gateway.client.errors import ClientError
from gateway.models import AccessRequest, Principal
from gateway.services import identity
from tests import helpers
from tests.cli.conftest import Live, live  # noqa: F401 - the fixture

PLAINTEXT = helpers.random_bytes(40_000, seed=23)


@dataclass
class Custody:
    """A lab-custody artifact of lab-a, the lab's identity file, and the header's digest."""

    live: Live
    artifact: str
    key: Path
    digest: str
    audit_key: str

    def request(self, who: str = "eval") -> str:
        made = self.live.call(
            who,
            "POST",
            f"/v1/artifacts/{self.artifact}/access-requests",
            json={"justification": "evaluation"},
        )
        return str(made["id"])

    def approve(self, request: str, *args: str) -> Any:
        return self.live.gateway(
            "lab",
            *("approve", request, "-i", str(self.key), "--header-sha256", self.digest, *args),
            GATEWAY_AUDIT_KEY=self.audit_key,
        )

    def state(self, request: str) -> str:
        with self.live.rt.db.session() as session:
            return str(session.get(AccessRequest, request).state)  # type: ignore[union-attr]

    def pins(self) -> dict[str, Any]:
        path = self.live.home / "gateway" / "known_recipients.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def end_grants(self) -> None:
        for grant in self.live.call("lab", "GET", "/v1/grants")["items"]:
            r = self.live.app.test_client().delete(
                f"/v1/grants/{grant['id']}", headers=self.live.principals.auth("lab")
            )
            assert r.status_code in (204, 409), r.get_json()


@pytest.fixture
def custody(live: Live, tmp_path: Path) -> Custody:  # noqa: F811
    lab = age.X25519Identity.generate()
    key = tmp_path / "lab.agekey"
    key.write_text(f"{lab}\n")
    upload = live.lab.create(custody="lab")
    data = helpers.age_file(str(lab.to_recipient()), PLAINTEXT)
    live.lab.put_all(upload, data)
    done = live.lab.complete(upload, data, PLAINTEXT)
    assert done.status_code == 201, done.get_json()
    header = age.read_header(io.BytesIO(data)).raw
    served = live.app.test_client().get("/v1/audit/key").get_data(as_text=True).strip()
    return Custody(live, done.get_json()["id"], key, hashlib.sha256(header).hexdigest(), served)


def keygen(gw: Live, path: Path, who: str = "eval") -> str:
    """``gateway keygen`` as ``who``: a recipient made and registered (an entry on the log)."""
    done = gw.gateway(who, "keygen", "-o", str(path), "--yes")
    assert done.exit_code == 0, done.output
    return str(age.parse_identities(path.read_text())[0].to_recipient())


def principal(gw: Live, name: str) -> Principal:
    with gw.rt.db.session() as session:
        found = session.scalars(
            select(Principal).where(Principal.org == "agency-a", Principal.name == name)
        ).one()
        session.expunge(found)
        return found


def test_the_honest_evaluator_is_approved_and_pinned_once_approved(
    custody: Custody, tmp_path: Path
) -> None:
    recipient = keygen(custody.live, tmp_path / "eval.agekey")
    eve = principal(custody.live, "eval")
    first = custody.request()
    done = custody.approve(first, "--expect-recipient", recipient)
    assert done.exit_code == 0, done.output
    assert f"note: first use of eval of agency-a ({eve.id}) at " in done.stderr
    assert f"{recipient} confirmed by --expect-recipient" in done.stderr
    assert "on record: entry " in done.stderr
    assert custody.state(first) == "approved"
    pins = custody.pins()
    assert pins[custody.live.url][eve.id] == [recipient]
    assert pins["names"][custody.live.url]["agency-a"]["eval"] == {
        "principal": eve.id,
        "recipient": recipient,
    }
    custody.end_grants()
    again = custody.approve(custody.request())
    assert again.exit_code == 0, again.output
    assert "first use" not in again.stderr


def test_a_recipient_written_into_the_database_with_no_entry_is_refused(
    custody: Custody, tmp_path: Path
) -> None:
    registered = keygen(custody.live, tmp_path / "eval.agekey")
    eve = principal(custody.live, "eval")
    attacker = str(age.X25519Identity.generate().to_recipient())
    with custody.live.rt.db.session() as session:
        session.execute(update(Principal).where(Principal.id == eve.id).values(recipient=attacker))
    request = custody.request()
    for args in ((), ("--trust-new-recipient",)):
        done = custody.approve(request, *args)
        assert done.exit_code == 1, done.output
        assert done.stderr.splitlines()[-1] == (
            f"gateway: error: the gateway offers {attacker} for eval of agency-a ({eve.id}), "
            f"but the audit log records {registered} as the latest they registered (log size "
            f"{done.stderr.split('(log size ')[1].split(')')[0]}): the file key is not wrapped "
            "for it"
        )
    assert custody.state(request) == "pending"
    assert custody.pins() == {}


def test_a_fresh_id_under_a_known_name_is_refused(custody: Custody, tmp_path: Path) -> None:
    recipient = keygen(custody.live, tmp_path / "eval.agekey")
    eve = principal(custody.live, "eval")
    assert custody.approve(custody.request(), "--expect-recipient", recipient).exit_code == 0
    custody.end_grants()
    # The insider moves the evaluator aside and makes a principal of the same name and org,
    # with a token of its own, which registers its own recipient (a genuine entry).
    gw = custody.live
    with gw.rt.db.session() as session:
        session.execute(update(Principal).where(Principal.id == eve.id).values(name="eval-old"))
        token, _ = identity.create_token(
            session, org="agency-a", role="evaluator", name="eval", ttl_days=1, now=gw.rt.now()
        )
    gw.principals.tokens["fresh"] = token
    attacker = keygen(gw, tmp_path / "attacker.agekey", who="fresh")
    fresh = principal(gw, "eval")
    assert fresh.id != eve.id
    request = custody.request("fresh")
    done = custody.approve(request)
    assert done.exit_code == 1, done.output
    assert done.stderr.splitlines()[-2] == (
        f"gateway: error: the gateway says eval of agency-a ({fresh.id}) has recipient "
        f"{attacker}, but eval of agency-a is pinned as {eve.id} on this machine: the file "
        "key is not wrapped for it"
    )
    assert "--trust-new-recipient" in done.stderr.splitlines()[-1]
    assert custody.state(request) == "pending"
    assert custody.pins()["names"][gw.url]["agency-a"]["eval"]["principal"] == eve.id
    # Told out of band that this is the evaluator now, the lab consents; the log records it.
    done = custody.approve(request, "--trust-new-recipient")
    assert done.exit_code == 0, done.output
    assert custody.pins()["names"][gw.url]["agency-a"]["eval"] == {
        "principal": fresh.id,
        "recipient": attacker,
    }


def test_an_approval_the_gateway_refuses_pins_nothing(custody: Custody, tmp_path: Path) -> None:
    keygen(custody.live, tmp_path / "eval.agekey")
    request = custody.request()
    # More than the 72 hours asked (the default): the gateway refuses it.
    done = custody.approve(request, "--hours", "720", "--trust-new-recipient")
    assert done.exit_code == 1 and "--hours 720 is more than" in done.stderr, done.output
    assert custody.state(request) == "pending"
    assert custody.pins() == {}
    assert custody.approve(request, "--trust-new-recipient").exit_code == 0
    assert custody.pins() != {}


def test_a_first_use_wraps_nothing_unless_the_lab_confirms_it(
    custody: Custody, tmp_path: Path
) -> None:
    recipient = keygen(custody.live, tmp_path / "eval.agekey")
    eve = principal(custody.live, "eval")
    request = custody.request()
    done = custody.approve(request)  # no terminal, no confirmation
    assert done.exit_code == 1, done.output
    assert done.stderr.splitlines()[-2] == (
        f"gateway: error: first use of eval of agency-a ({eve.id}) at {custody.live.url}: no "
        f"recipient is pinned for them here, and there is no terminal to confirm {recipient} "
        "at: the file key is not wrapped for it"
    )
    assert "--expect-recipient AGE1..." in done.stderr.splitlines()[-1]
    other = str(age.X25519Identity.generate().to_recipient())
    done = custody.approve(request, "--expect-recipient", other)
    assert done.exit_code == 1 and f"not {other} as expected" in done.stderr, done.output
    assert custody.state(request) == "pending" and custody.pins() == {}
    done = custody.approve(request, "--trust-new-recipient")
    assert done.exit_code == 0, done.output
    assert "confirmed by --trust-new-recipient" in done.stderr
    custody.end_grants()
    again = custody.approve(custody.request(), "--expect-recipient", other)
    assert again.exit_code == 1 and f"not {other} as expected" in again.stderr  # pinned or not


def test_a_pin_by_id_alone_is_upgraded_to_a_pin_by_name_once_approved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "known_recipients.json"
    path.write_text(json.dumps({"http://gw": {"prn_eve": [R1]}}))  # made before pins by name
    assert trust.check_recipient(EVE, path=path) is False
    assert "once approved, it is pinned under the name the gateway gives it now, eve of " in (
        capsys.readouterr().err
    )
    # the check writes nothing: a name shown for an approval that then fails pins nothing
    assert "names" not in json.loads(path.read_text())
    trust.pin_recipient(EVE, path=path)  # what a successful approval does
    names = json.loads(path.read_text())["names"]["http://gw"]["agency-a"]
    assert names == {"eve": {"principal": "prn_eve", "recipient": R1}}
    with pytest.raises(ClientError, match="but eve of agency-a is pinned as prn_eve"):
        trust.check_recipient(replace(EVE, principal="prn_new", recipient=R2), path=path)


R1, R2 = (str(age.X25519Identity.generate().to_recipient()) for _ in range(2))
EVE = trust.Evaluator("http://gw", "prn_eve", "agency-a", "eve", R1)


@pytest.mark.parametrize(
    ("shown", "problem"),
    [
        (replace(EVE, recipient=R2), f"not {R1} as pinned for prn_eve"),
        (replace(EVE, principal="prn_new"), "but eve of agency-a is pinned as prn_eve"),
        (replace(EVE, principal="prn_new", recipient=R2), "but eve of agency-a is pinned as"),
        (replace(EVE, name="eve2"), "but prn_eve is pinned as eve of agency-a"),
    ],
    ids=["new-recipient", "fresh-id", "fresh-id-and-recipient", "known-id-renamed"],
)
def test_a_pin_by_id_or_by_name_that_disagrees_is_refused_without_consent(
    tmp_path: Path, shown: trust.Evaluator, problem: str
) -> None:
    path = tmp_path / "known_recipients.json"
    assert trust.check_recipient(EVE, path=path) is True  # first use
    assert not path.exists()  # a check writes nothing
    trust.pin_recipient(EVE, path=path)
    assert trust.check_recipient(EVE, path=path) is False
    with pytest.raises(ClientError, match=problem) as refused:
        trust.check_recipient(shown, path=path)
    assert refused.value.hint is not None and "--trust-new-recipient" in refused.value.hint
    assert trust.check_recipient(shown, trust_new=True, path=path) is False
    trust.pin_recipient(shown, path=path)
    assert trust.check_recipient(shown, path=path) is False  # the consented one is pinned now
    names = json.loads(path.read_text())["names"]["http://gw"]["agency-a"]
    assert [n for n, pin in names.items() if pin["principal"] == shown.principal] == [shown.name]


def test_a_look_alike_name_is_no_evaluator() -> None:
    material = {"grantee": "prn_eve", "recipient": R1, "org": "agency-a"}
    for org, name in (("agency\u2011a", "eve"), ("agency-a", "eve "), ("agency-a", None)):
        with pytest.raises(ClientError):
            trust.evaluator("http://gw", {**material, "org": org, "grantee_name": name})
    assert trust.evaluator("http://gw", {**material, "grantee_name": "eve"}) == EVE
