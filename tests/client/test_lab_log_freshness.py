"""A lab-custody approval refuses a log that withholds or rolls back an evaluator's registrations.

The log proves each entry served is in it, not that none was left out. The lab's machine
remembers the largest checkpoint it verified of the gateway's log (and asks for a
consistency proof from it), the highest entry it saw as an evaluator's latest registration,
and requires each registration's ``old`` to be the ``new`` of the one before. The insider
who deletes entries from the database is simulated with SQL in the test; the proofs are the
real gateway's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from gateway.audit.store import Entry
from gateway.models import Principal
from gateway.services.identity import RECIPIENT_SET
from tests.cli.conftest import live  # noqa: F401 - the fixture
from tests.client.test_recipient_pin import Custody, custody, keygen, principal  # noqa: F401


def seen(c: Custody) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((c.live.home / "gateway" / "seen_log.json").read_text())
    return data


def remember(c: Custody, saved: dict[str, Any]) -> None:
    (c.live.home / "gateway" / "seen_log.json").write_text(json.dumps(saved))


def registrations(c: Custody, principal_id: str) -> list[int]:
    """The indexes of the principal's registrations, once the log has taken them in."""
    c.live.call("eval", "GET", "/v1/audit/entries")
    with c.live.rt.db.session() as session:
        return list(
            session.scalars(
                select(Entry.index)
                .where(Entry.actor == principal_id, Entry.action == RECIPIENT_SET)
                .order_by(Entry.index)
            )
        )


def withhold(c: Custody, index: int, recipient: str, principal_id: str) -> None:
    """The insider deletes entry ``index`` and puts ``recipient`` back in force."""
    with c.live.rt.db.session() as session:
        session.execute(delete(Entry).where(Entry.index == index))
        session.execute(
            update(Principal).where(Principal.id == principal_id).values(recipient=recipient)
        )


def test_a_withheld_newest_registration_is_refused(custody: Custody, tmp_path: Path) -> None:  # noqa: F811
    old = keygen(custody.live, tmp_path / "eval.agekey")
    eve = principal(custody.live, "eval")
    assert custody.approve(custody.request(), "--expect-recipient", old).exit_code == 0
    custody.end_grants()
    keygen(custody.live, tmp_path / "eval-new.agekey")  # rotated: the old one is retired
    assert custody.approve(custody.request(), "--trust-new-recipient").exit_code == 0
    custody.end_grants()
    first, newest = registrations(custody, eve.id)
    assert seen(custody)[custody.live.url]["latest"][eve.id] == newest
    withhold(custody, newest, old, eve.id)
    request = custody.request()
    done = custody.approve(request, "--trust-new-recipient")  # talked into the old one
    assert done.exit_code == 1, done.output
    assert done.stderr.splitlines()[-1] == (
        f"gateway: error: the gateway proves entry {first} as the latest recipient "
        f"registration of eval of agency-a ({eve.id}), but this machine has seen entry "
        f"{newest} as the latest: a newer registration is withheld"
    )
    assert custody.state(request) == "pending"


def test_a_registration_left_out_between_two_is_refused(custody: Custody, tmp_path: Path) -> None:  # noqa: F811
    made = [keygen(custody.live, tmp_path / f"eval-{n}.agekey") for n in range(3)]
    eve = principal(custody.live, "eval")
    first, middle, last = registrations(custody, eve.id)
    withhold(custody, middle, made[2], eve.id)
    request = custody.request()
    done = custody.approve(request, "--expect-recipient", made[2])
    assert done.exit_code == 1, done.output
    assert done.stderr.splitlines()[-1] == (
        f"gateway: error: entry {last} replaces {eve.id}'s recipient {made[1]}, but entry "
        f"{first} sets {made[0]}: a registration between them is withheld"
    )
    assert custody.state(request) == "pending" and custody.pins() == {}


def test_a_checkpoint_that_does_not_extend_the_one_verified_is_refused(
    custody: Custody,  # noqa: F811
    tmp_path: Path,
) -> None:
    recipient = keygen(custody.live, tmp_path / "eval.agekey")
    assert custody.approve(custody.request(), "--expect-recipient", recipient).exit_code == 0
    custody.end_grants()
    verified = seen(custody)
    saved = verified[custody.live.url]["checkpoint"]
    assert saved["size"] > 0
    other = base64.b64encode(bytes(32)).decode()
    cases = [
        ({**saved, "size": saved["size"] + 1000}, "the log was rolled back"),
        ({**saved, "root": other}, "does not extend the one of"),
    ]
    request = custody.request()
    for checkpoint, problem in cases:
        remember(
            custody, {custody.live.url: {**verified[custody.live.url], "checkpoint": checkpoint}}
        )
        done = custody.approve(request)
        assert done.exit_code == 1 and problem in done.stderr, done.output
        assert "seen_log.json" in done.stderr  # the hint names the file and what to check
        assert custody.state(request) == "pending"
    # an empty tree verified once (a new gateway) proves nothing and blocks nothing later
    empty = {"origin": saved["origin"], "size": 0, "root": base64.b64encode(bytes(32)).decode()}
    remember(custody, {custody.live.url: {**verified[custody.live.url], "checkpoint": empty}})
    done = custody.approve(request)
    assert done.exit_code == 0, done.output
    custody.end_grants()
    request = custody.request()
    remember(custody, verified)
    done = custody.approve(request)  # the log grew since, consistently
    assert done.exit_code == 0, done.output
    assert seen(custody)[custody.live.url]["checkpoint"]["size"] > saved["size"]


def test_an_honest_history_is_not_taken_for_a_withheld_one(
    custody: Custody,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A first entry that replaces a recipient registered before the log recorded it, and an
    evaluator renamed since its registration, are no withheld registration: the latest is
    still the principal's own, and the rename is the pins' business."""
    made = [keygen(custody.live, tmp_path / f"eval-{n}.agekey") for n in range(2)]
    eve = principal(custody.live, "eval")
    first, _ = registrations(custody, eve.id)
    with custody.live.rt.db.session() as session:  # as a log from before registrations were
        session.execute(delete(Entry).where(Entry.index == first))  # recorded would show
    assert custody.approve(custody.request(), "--expect-recipient", made[1]).exit_code == 0
    custody.end_grants()
    with custody.live.rt.db.session() as session:
        session.execute(update(Principal).where(Principal.id == eve.id).values(name="eve"))
    request = custody.request()
    refused = custody.approve(request)
    assert refused.exit_code == 1 and "withheld" not in refused.stderr, refused.output
    assert custody.state(request) == "pending"
    done = custody.approve(request, "--trust-new-recipient")
    assert done.exit_code == 0, done.output
