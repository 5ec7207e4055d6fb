"""Publication through witnesses: the gateway's anchors wait for its quorum's cosignatures.

Two real ``gateway witness serve`` processes (c2sp.org/tlog-witness) list the gateway's
key; the gateway submits each checkpoint to both (``audit.witnesses``, quorum 2) and
publishes and serves it only once both cosigned (c2sp.org/tlog-policy). While one is down
nothing is published and the last cosigned checkpoint stays served; a history rewritten
under the last signed checkpoint is never signed, and one re-signed behind the gateway's
back is refused by the witnesses that cosigned the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from gateway import events
from gateway.audit import merkle, store, trust
from gateway.clock import FrozenClock
from gateway.runtime import Runtime
from gateway.services import anchor, cosigning
from tests.witness.conftest import WitnessProcess, start_witness

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture
def witnesses(tmp_path: Path, rt: Runtime) -> Iterator[list[WitnessProcess]]:
    vkey = rt.audit_signer.verifier_key
    ws = [start_witness(tmp_path / n, [vkey], name=f"witness.test/{n}") for n in ("a", "b")]
    yield ws
    for w in ws:
        w.stop()


@pytest.fixture
def gw(rt: Runtime, clock: FrozenClock, witnesses: list[WitnessProcess]) -> Iterator[Runtime]:
    """The gateway of ``rt``, submitting to both witnesses, with a quorum of both."""
    lines = "\n".join(f"{w.url} {' '.join(k.vkey for k in w.keys)}" for w in witnesses)
    config = rt.config.replace(
        **{"audit.witnesses": lines, "audit.quorum": 2, "audit.witness_deadline_seconds": 10}
    )
    runtime = Runtime(config, clock=clock)
    yield runtime
    runtime.close()


def _append(rt: Runtime, n: int) -> None:
    for i in range(n):
        with events.fail_closed(rt) as session:
            events.record(rt, session, "admin.org.create", None, details={"org": f"org-{i}"})


def _size(rt: Runtime) -> int:
    with rt.db.session() as s:
        return store.size(s)


def _policy(gw: Runtime) -> trust.Policy:
    return cosigning.log_witnesses(gw).policy


def test_a_checkpoint_is_published_and_served_once_both_witnesses_cosigned(gw: Runtime) -> None:
    _append(gw, 3)
    name = anchor.publish(gw, force=True)
    assert name is not None
    published = anchor.archive(gw).get(name).decode()
    verified = trust.verify_checkpoint(published, _policy(gw))
    cosigners = sorted(verified.cosignatures)  # each witness's Ed25519 and ML-DSA-44 keys
    assert [n.split("+")[0] for n in cosigners] == ["witness.test/a"] * 2 + ["witness.test/b"] * 2
    assert verified.checkpoint.size == _size(gw) and cosigning.served(gw) == published
    _append(gw, 2)
    second = anchor.publish(gw, force=True)
    assert second is not None and cosigning.served(gw) != published
    assert trust.verify_checkpoint(cosigning.served(gw), _policy(gw)).checkpoint.size == _size(gw)
    assert anchor.check_published(gw).ok


def test_while_a_witness_is_down_nothing_is_published_and_the_last_stays_served(
    gw: Runtime, witnesses: list[WitnessProcess]
) -> None:
    _append(gw, 2)
    first = anchor.publish(gw, force=True)
    assert first is not None
    served = cosigning.served(gw)
    witnesses[1].stop()
    _append(gw, 2)
    assert anchor.publish(gw, force=True) is None
    assert cosigning.served(gw) == served
    assert [n for n in anchor.archive(gw).list_names() if n.startswith("checkpoint-")] == [first]
    newest = cosigning.sign_latest(gw)  # fresh entries stay provable against the signed head
    assert (
        newest.checkpoint.size
        == _size(gw)
        > trust.verify_checkpoint(served, _policy(gw)).checkpoint.size
    )
    witnesses[1].start()  # back, with its state: the next sweep publishes
    assert anchor.publish(gw, force=True) is not None
    assert trust.verify_checkpoint(cosigning.served(gw), _policy(gw)).checkpoint.size == _size(gw)


def test_no_checkpoint_is_served_before_the_quorum_first_cosigned(
    gw: Runtime, witnesses: list[WitnessProcess]
) -> None:
    witnesses[0].stop()
    _append(gw, 1)
    assert anchor.publish(gw, force=True) is None
    with pytest.raises(cosigning.NotPublished):
        cosigning.served(gw)


def _rewrite(rt: Runtime, index: int) -> None:
    """Change entry ``index`` and recompute every stored hash, as an operator with the database can."""
    with rt.db.session() as s:
        s.execute(update(store.Entry).where(store.Entry.index == index).values(leaf=b"{}"))
        leaves = [leaf for _, leaf in store.iter_leaves(s, 0, store.size(s))]
        s.execute(delete(store.Subtree))
        rng = merkle.CompactRange()
        for leaf in leaves:
            created = rng.append(merkle.leaf_hash(leaf))
            s.add_all(store.Subtree(level=n.level, index=n.index, hash=h) for n, h in created)
        s.execute(
            update(store.Head)
            .where(store.Head.id == store.HEAD_ID)
            .values(root=rng.root(), border=b"".join(rng.hashes))
        )


def test_a_rewritten_history_is_never_signed(gw: Runtime) -> None:
    _append(gw, 4)
    assert anchor.publish(gw, force=True) is not None
    _rewrite(gw, 1)
    _append(gw, 1)
    # the publication signed 5 entries: the 4 and the audit.heads entry it appended first
    with pytest.raises(cosigning.Inconsistent, match="size 5"):
        cosigning.sign_latest(gw)
    with pytest.raises(cosigning.Inconsistent):
        anchor.publish(gw, force=True)


def test_a_history_re_signed_behind_the_gateway_is_refused_by_the_witnesses(
    gw: Runtime,
) -> None:
    """Split view: the operator also resets the last-signed row; the witnesses still refuse."""
    _append(gw, 4)
    honest = anchor.publish(gw, force=True)
    assert honest is not None
    _rewrite(gw, 1)
    _append(gw, 1)
    with gw.db.session() as s:
        s.execute(delete(cosigning.LogCheckpoint).where(cosigning.LogCheckpoint.kind == "signed"))
    signed = cosigning.sign_latest(gw)  # re-signed over the rewritten history
    result = cosigning.cosign(gw, signed, cosigning.log_witnesses(gw))
    assert result.verified is None and len(result.failures) == 2, result.failures
    with pytest.raises(trust.QuorumNotMet):
        trust.verify_checkpoint(result.note, _policy(gw))
    assert anchor.publish(gw, force=True) is None
    assert cosigning.served(gw) == anchor.archive(gw).get(honest).decode()
