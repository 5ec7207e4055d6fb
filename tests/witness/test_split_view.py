"""Split view: a gateway log whose history was rewritten and re-signed meets witnesses.

The log is the gateway's real audit store (SQLite) and its real checkpoint signer; two
witness processes cosign the honest checkpoint, then refuse the rewritten one
(c2sp.org/tlog-witness "add-checkpoint": 422 when the consistency proof does not verify,
409 when the old size is not theirs or, at their size, the root is another). A verifier with the policy (c2sp.org/tlog-policy,
quorum 2 of 2) accepts only a checkpoint both cosigned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import note, store, trust
from gateway.audit.witness import (
    Conflict,
    Forked,
    WitnessClient,
    WitnessRefused,
    add_cosignatures,
    cosign,
)
from gateway.db import Database
from tests.audit.conftest import ORIGIN, add_entry, make_db
from tests.witness.conftest import WitnessProcess, start_witness

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SIGNER = note.Signer(ORIGIN, bytes(range(32)))


def _log(n: int, rewrite: int | None = None) -> Database:
    """A gateway audit log of ``n`` entries; with ``rewrite``, that entry says something else."""
    db = make_db()
    with db.session() as s:
        for i in range(n):
            if i == rewrite:
                add_entry(s, i, action="artifact.read", details={"n": i, "hidden": "key.release"})
            else:
                add_entry(s, i)
    return db


def _grow(db: Database, start: int, end: int) -> None:
    with db.session() as s:
        for i in range(start, end):
            add_entry(s, i)


def _checkpoint(db: Database) -> str:
    with db.session() as s:
        return store.sign_checkpoint(s, SIGNER, ORIGIN)


def _proof(db: Database, old: int) -> list[bytes]:
    with db.session() as s:
        return store.consistency_proof(s, old, store.size(s))


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[list[WitnessProcess]]:
    ws = [
        start_witness(tmp_path / name, [SIGNER.verifier_key], name=f"witness.test/{name}")
        for name in ("a", "b")
    ]
    yield ws
    for w in ws:
        w.stop()


def _policy(ws: list[WitnessProcess]) -> trust.Policy:
    lines = [f"log {SIGNER.verifier_key}"]
    for w in ws:
        short = w.name.rsplit("/", 1)[1]
        lines += [f"witness {short}-{k.sig_type} {k.vkey}" for k in w.keys]
        lines.append(f"group {short} all " + " ".join(f"{short}-{k.sig_type}" for k in w.keys))
    lines += ["group both 2 a b", "quorum both"]
    return trust.parse_policy("\n".join(lines) + "\n")


def test_a_rewritten_history_is_refused_and_an_under_cosigned_checkpoint_rejected(
    witnesses: list[WitnessProcess],
) -> None:
    a, b = (WitnessClient(w.url, w.keys) for w in witnesses)
    policy = _policy(witnesses)
    honest = _log(40)
    cp40 = _checkpoint(honest)
    cosigned = cp40
    for client in (a, b):
        result = client.add_checkpoint(0, [], cp40)
        assert not isinstance(result, Conflict)
        cosigned = add_cosignatures(cosigned, result)
    assert trust.verify_checkpoint(cosigned, policy).checkpoint.size == 40

    # The operator rewrites entry 17, appends ten more, and re-signs with the same key.
    forged = _log(40, rewrite=17)
    _grow(forged, 40, 50)
    forged_cp = _checkpoint(forged)
    assert note.open_checkpoint(forged_cp, [SIGNER.verifier_key]).size == 50
    for client in (a, b):
        with pytest.raises(WitnessRefused) as refused:
            client.add_checkpoint(40, _proof(forged, 40), forged_cp)
        assert refused.value.status == 422
        assert client.add_checkpoint(0, [], forged_cp) == Conflict(40)
    # The same fork at the same size: equal sizes, different roots. tlog-witness: "If the old
    # size matches the checkpoint size, the witness MUST check that the root hashes are also
    # identical. If they don't match, the witness MUST respond with a 409 Conflict".
    same_size_fork = _checkpoint(_log(40, rewrite=17))
    assert a.add_checkpoint(40, [], same_size_fork) == Conflict(40)
    with pytest.raises(Forked, match="another tree of size 40"):
        cosign(a, 0, lambda old: _proof(forged, old) if old < 40 else [], same_size_fork)
    with pytest.raises(
        trust.QuorumNotMet, match="quorum both is not met \\(no witness cosigned\\)"
    ):
        trust.verify_checkpoint(forged_cp, policy)

    # Honest growth, cosigned by only one of the two witnesses: not enough for the policy.
    _grow(honest, 40, 50)
    cp50 = _checkpoint(honest)
    only_a = a.add_checkpoint(40, _proof(honest, 40), cp50)
    assert not isinstance(only_a, Conflict)
    under = add_cosignatures(cp50, only_a)
    with pytest.raises(trust.QuorumNotMet) as err:
        trust.verify_checkpoint(under, policy)
    assert "group both needs 2 of 2 (a, b) and has 1" in str(err.value)
    only_b = b.add_checkpoint(40, _proof(honest, 40), cp50)
    assert not isinstance(only_b, Conflict)
    assert trust.verify_checkpoint(add_cosignatures(under, only_b), policy).checkpoint.size == 50
    # What the witnesses serve is the honest checkpoint, never the fork.
    for client in (a, b):
        served = client.checkpoint(ORIGIN)
        assert served is not None
        assert note.open_checkpoint(served, [SIGNER.verifier_key]) == note.parse_checkpoint(
            note.parse_note(cp50)[0]
        )
