"""A log written before v2: upgraded in place, its v1 entries kept, v2 entries chained after them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from gateway.audit import chains, merkle, note, store, verify
from gateway.audit import leaf as leafmod
from gateway.db import Database
from gateway.migrations import upgrade
from tests.audit.conftest import ORIGIN, T0, add_entry


def _write_v1_log(db: Database, subjects: list[str | None]) -> None:
    """Entries as the log wrote them before v2: v1 leaves, ``subject_org`` only in its column."""
    rng = merkle.CompactRange()
    with db.session() as s:
        conn = s.connection()
        for i, subject in enumerate(subjects):
            fields = {
                "time": T0,
                "actor": "prn_1",
                "org": "agency-a",
                "role": "evaluator",
                "action": "artifact.read",
                "artifact": "art_1",
                "grant": None,
                "outcome": "ok",
                "request_id": f"req-{i}",
            }
            leaf = leafmod.encode_leaf_v1(index=i, ip=None, details={}, **fields)
            created = rng.append(merkle.leaf_hash(leaf))
            fields["grant_id"] = fields.pop("grant")
            conn.execute(
                insert(store.Entry.__table__).values(
                    idx=i, leaf=leaf, subject_org=subject, **fields
                )
            )
            conn.execute(
                insert(store.Subtree.__table__),
                [{"level": n.level, "idx": n.index, "hash": h} for n, h in created],
            )
        conn.execute(
            insert(store.Head.__table__).values(
                id=store.HEAD_ID, size=rng.size, root=rng.root(), border=b"".join(rng.hashes)
            )
        )


def test_an_upgraded_v1_log_keeps_its_views_and_chains_from_its_first_v2_entry(
    tmp_path: Path, signer: note.Signer
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    db = Database(url)
    try:
        _write_v1_log(db, ["lab-a", None, "lab-b", "lab-a"])
        upgrade(url)
        with db.session() as s:
            # The v1 entries are shown to whom the old scope showed them, by their column.
            assert [e.index for e in store.entries(s, concerning="lab-a")] == [0, 3]
            assert [e.index for e in store.entries(s, concerning="agency-a")] == []
            assert chains.org_heads(s) == {}
            add_entry(s, 4, org="agency-a", subject_org="lab-a")
            add_entry(s, 5, org="agency-a", subject_org="lab-a")
            text = store.sign_checkpoint(s, signer, ORIGIN)
            leaves = [leaf for _, leaf in store.iter_leaves(s)]
            assert [e.index for e in store.entries(s, concerning="lab-a")] == [0, 3, 4, 5]
        assert [json.loads(x).get("prev") for x in leaves[4:]] == [
            {"agency-a": None, "lab-a": None},
            {"agency-a": 4, "lab-a": 4},
        ]
        v = verify.verify_log(leaves, text, signer.verifier_key)
        assert v.ok, v.message
    finally:
        db.dispose()


def test_the_upgrade_stops_on_a_signing_key_two_orgs_registered(tmp_path: Path) -> None:
    from datetime import datetime

    from gateway.models import Org, Principal, SigningKey

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    db = Database(url)
    try:
        now = datetime(2026, 11, 26)
        with db.session() as s:
            conn = s.connection()
            for n, org in enumerate(("lab-a", "lab-b")):
                conn.execute(insert(Org.__table__).values(name=org, kind="lab", created_at=now))
                conn.execute(
                    insert(Principal.__table__).values(
                        id=f"prn_{n}", name="alice", org=org, role="lab", created_at=now
                    )
                )
                conn.execute(
                    insert(SigningKey.__table__).values(
                        id=f"key_{n}",
                        org=org,
                        principal_id=f"prn_{n}",
                        public_key="A" * 43 + "=",
                        created_at=now,
                    )
                )
        with pytest.raises(RuntimeError, match="registered more than once"):
            upgrade(url)
        with db.session() as s:
            s.execute(SigningKey.__table__.delete().where(SigningKey.id == "key_1"))
        upgrade(url)
        with db.session() as s:
            assert s.scalars(select(SigningKey.id)).all() == ["key_0"]
    finally:
        db.dispose()
