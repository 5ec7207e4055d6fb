"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import schema
from gateway.db import make_engine
from gateway.migrations import upgrade
from tests.conftest import DATABASES


@pytest.fixture(params=DATABASES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "postgresql":
        with request.getfixturevalue("pg_cluster").database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'm.db'}"


def test_migrations_match_the_models(empty_url: str) -> None:
    url = empty_url
    upgrade(url)
    upgrade(url)  # idempotent
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    engine.dispose()
    assert diff == []


def test_artifacts_stored_before_the_shares_table_are_shared_after_it(empty_url: str) -> None:
    """0002 fills artifact_shares from the share_with of every artifact already stored."""
    from datetime import datetime

    from sqlalchemy import insert, select

    from gateway.models import Artifact, ArtifactShare, Org, Principal, Upload

    url = empty_url
    upgrade(url, "0001")
    engine = make_engine(url)
    now = datetime(2026, 11, 26)
    with engine.begin() as conn:
        for name, kind in (("lab-a", "lab"), ("agency-a", "agency"), ("agency-b", "agency")):
            conn.execute(insert(Org.__table__).values(name=name, kind=kind, created_at=now))
        conn.execute(
            insert(Principal.__table__).values(
                id="prn_1", name="alice", org="lab-a", role="lab", created_at=now
            )
        )
        for n, share_with in ((1, ["agency-a", "agency-b"]), (2, ["agency-b"])):
            common = {"org": "lab-a", "name": f"m{n}", "kind": "weights", "share_with": share_with}
            conn.execute(
                insert(Upload.__table__).values(
                    id=f"up_{n}",
                    principal_id="prn_1",
                    part_size=1,
                    max_parts=1,
                    recipient="age1",
                    state="completed",
                    object_key=f"artifacts/up_{n}.age",
                    store_handle="",
                    created_at=now,
                    expires_at=now,
                    **common,
                )
            )
            conn.execute(
                insert(Artifact.__table__).values(
                    id=f"art_{n}",
                    upload_id=f"up_{n}",
                    size=1,
                    header_size=1,
                    object_key=f"artifacts/up_{n}.age",
                    state="available",
                    submitted_at=now,
                    review_ends_at=now,
                    manifest={},
                    signature="",
                    signing_key="",
                    **common,
                )
            )
    upgrade(url)
    with engine.connect() as conn:
        shares = set(conn.execute(select(ArtifactShare.artifact_id, ArtifactShare.org)).all())
    engine.dispose()
    assert shares == {("art_1", "agency-a"), ("art_1", "agency-b"), ("art_2", "agency-b")}


def test_custody_keys_of_the_master_key_are_marked_legacy_and_still_unwrap(
    empty_url: str, tmp_path: Path
) -> None:
    """0008 marks every existing value as the master key's and reserves its artifact id."""
    from datetime import datetime

    from sqlalchemy import insert, select, text

    from gateway import age
    from gateway.custody import LEGACY_REF, CustodyContext, KeyRef
    from gateway.custody.local import LocalCustody
    from gateway.models import CustodyKey, Org, Principal, Upload
    from tests.custody.legacy import legacy_wrap, make_master_key

    master = make_master_key(tmp_path / "keys" / "master.key")
    identities = {n: str(age.X25519Identity.generate()) for n in (1, 2)}
    upgrade(empty_url, "0007")
    engine = make_engine(empty_url)
    now = datetime(2026, 12, 1)
    with engine.begin() as conn:
        conn.execute(insert(Org.__table__).values(name="lab-a", kind="lab", created_at=now))
        conn.execute(
            insert(Principal.__table__).values(
                id="prn_1", name="alice", org="lab-a", role="lab", created_at=now
            )
        )
        for n, state, artifact in ((1, "completed", "art_1"), (2, "open", None)):
            conn.execute(
                insert(Upload.__table__).values(
                    id=f"up_{n}",
                    org="lab-a",
                    principal_id="prn_1",
                    name=f"m{n}",
                    kind="weights",
                    share_with=["agency-a"],
                    part_size=1,
                    max_parts=1,
                    recipient="age1",
                    state=state,
                    object_key=f"artifacts/up_{n}.age",
                    store_handle="",
                    created_at=now,
                    expires_at=now,
                    artifact_id=artifact,
                )
            )
            wrapped = legacy_wrap(master, identities[n].encode(), f"up_{n}")
            conn.execute(  # the table as 0005 left it: no key_ref, no artifact_id
                text(
                    "INSERT INTO custody_keys (upload_id, wrapped, created_at) VALUES (:u, :w, :c)"
                ),
                {"u": f"up_{n}", "w": wrapped, "c": now},
            )
    engine.dispose()
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        rows = {r.upload_id: r for r in conn.execute(select(CustodyKey.__table__))}
    engine.dispose()
    assert {r.key_ref for r in rows.values()} == {LEGACY_REF}
    assert rows["up_1"].artifact_id == "art_1"  # a completed upload keeps its artifact's id
    assert rows["up_2"].artifact_id.startswith("art_")  # an open one has one reserved
    local = LocalCustody(tmp_path / "keys" / "custody", tmp_path / "keys" / "master.key")
    for n in (1, 2):
        row = rows[f"up_{n}"]
        ctx = CustodyContext(f"up_{n}", row.artifact_id, "lab-a")
        assert local.unwrap(ctx, KeyRef(row.key_ref), row.wrapped).decode() == identities[n]


def test_chains_stored_before_0012_become_canonical_and_a_revocation_survives(
    empty_url: str,
) -> None:
    """0012 rewrites every stored chain in canonical form; rows that turn out to hold the
    same certificates become the oldest one, revoked if any of them was; a chain in force
    that holds every certificate of one revoked before it was registered is revoked; keys
    are untouched."""
    import hashlib
    from datetime import datetime

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from sqlalchemy import insert, select

    from gateway.models import OmsKey, Org, Principal
    from gateway.tree import oms
    from tests.api.test_oms_chain_revoke import _ca, pem
    from tests.api.test_oms_keys import ec_public

    root, i1, i2 = _ca()
    extra, _, _ = _ca()
    key_pem, _ = ec_public(ec.SECP256R1())
    as_given = {  # id: (PEM as an older gateway stored it, created, revoked)
        "oms_a": (pem(i1, root), datetime(2026, 11, 1), None),
        "oms_b": (pem(root, i1, root), datetime(2026, 11, 2), datetime(2026, 11, 5)),
        "oms_c": (pem(root, i1), datetime(2026, 11, 3), datetime(2026, 11, 4)),
        "oms_d": (pem(i2, root), datetime(2026, 11, 6), None),
        "oms_k": (key_pem, datetime(2026, 11, 7), None),
        "oms_x": (pem(extra, i1, root), datetime(2026, 11, 8), None),  # voids oms_a's revocation
    }
    upgrade(empty_url, "0011")
    engine = make_engine(empty_url)
    now = datetime(2026, 12, 1)
    with engine.begin() as conn:
        conn.execute(insert(Org.__table__).values(name="lab-a", kind="lab", created_at=now))
        conn.execute(
            insert(Principal.__table__).values(
                id="prn_1", name="alice", org="lab-a", role="lab", created_at=now
            )
        )
        for key_id, (text, created, revoked) in as_given.items():
            conn.execute(
                insert(OmsKey.__table__).values(
                    id=key_id,
                    org="lab-a",
                    principal_id="prn_1",
                    public_key=text,
                    fingerprint=hashlib.sha256(text.encode()).hexdigest(),  # as given, unique
                    created_at=created,
                    revoked_at=revoked,
                )
            )
    upgrade(empty_url)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(OmsKey.__table__)).all()}
    engine.dispose()
    assert set(rows) == {"oms_a", "oms_d", "oms_k", "oms_x"}
    assert rows["oms_x"].revoked_at == datetime(2026, 11, 8)
    canonical = oms.chain_certificates(pem(i1, root).encode())
    assert rows["oms_a"].public_key == oms.chain_pem(canonical)
    assert rows["oms_a"].fingerprint == oms.chain_fingerprint(canonical)
    assert rows["oms_a"].revoked_at == datetime(2026, 11, 4)  # the earliest of the three
    assert rows["oms_a"].identity is None
    other = oms.chain_certificates(pem(i2, root).encode())
    assert (rows["oms_d"].fingerprint, rows["oms_d"].revoked_at) == (
        oms.chain_fingerprint(other),
        None,
    )
    assert rows["oms_k"].public_key == key_pem
    assert i1.public_bytes(Encoding.PEM).decode() in rows["oms_a"].public_key
