"""The policy as a table: role x action x own/foreign object, and the lists it scopes."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit import store as audit_store
from gateway.audit.store import Entry
from gateway.authz import ACTIONS, OWNED_KINDS, READ_ACTION, Decision, Owned, decide, owns, scope
from gateway.caller import Actor
from gateway.db import Database
from gateway.models import (
    AccessRequest,
    Artifact,
    ArtifactKind,
    ArtifactShare,
    ArtifactState,
    Grant,
    GrantState,
    Org,
    Principal,
    RequestState,
    SigningKey,
    Upload,
    UploadState,
)

A, D, H = Decision.ALLOW, Decision.DENY, Decision.HIDE
ROLES = ("lab", "evaluator", "auditor", "admin")

# (action, role, own, expected) for the decisions that matter most; the rest is
# covered by the invariants below.
TABLE = [
    ("upload.create", "lab", True, A),
    ("upload.create", "evaluator", True, D),
    ("upload.create", "auditor", True, D),
    ("upload.create", "admin", True, D),
    ("upload.write", "lab", True, A),
    ("upload.write", "lab", False, H),
    ("artifact.read", "lab", True, A),
    ("artifact.read", "lab", False, H),
    ("artifact.read", "evaluator", True, A),
    ("artifact.read", "evaluator", False, H),
    ("artifact.read", "auditor", False, A),
    ("artifact.read", "admin", False, A),
    ("artifact.withdraw", "lab", True, A),
    ("artifact.withdraw", "lab", False, H),
    ("artifact.withdraw", "admin", True, D),
    ("access.request", "evaluator", True, A),
    ("access.request", "evaluator", False, H),
    ("access.request", "lab", True, D),
    ("access.decide", "lab", True, A),
    ("access.decide", "lab", False, H),
    ("access.decide", "evaluator", True, D),
    ("grant.revoke", "lab", True, A),
    ("grant.revoke", "lab", False, H),
    ("grant.revoke", "admin", False, A),
    ("grant.revoke", "auditor", True, D),
    ("content.read", "evaluator", True, A),
    ("content.read", "evaluator", False, H),
    ("content.read", "lab", True, D),
    ("content.read", "auditor", True, D),
    ("content.read", "admin", True, D),
    ("audit.read_all", "auditor", True, A),
    ("audit.read_all", "lab", True, D),
    ("audit.read_own", "lab", True, A),
    ("audit.read_own", "evaluator", True, A),
    ("audit.read_own", "evaluator", False, D),
    ("audit.read_own", "admin", True, D),
    ("audit.proof", "lab", True, A),
    ("audit.proof", "evaluator", True, A),
    ("audit.proof", "admin", True, D),
    ("signing_key.revoke", "lab", True, A),
    ("signing_key.revoke", "lab", False, H),
    ("signing_key.revoke", "evaluator", True, D),
    ("signing_key.revoke", "admin", True, D),
    ("admin.manage", "admin", True, A),
    ("admin.manage", "lab", True, D),
    ("me.recipient", "evaluator", True, A),
    ("me.recipient", "lab", True, D),
    ("me.signing_key", "lab", True, A),
    ("me.signing_key", "evaluator", True, D),
]


@pytest.mark.parametrize(("action", "role", "own", "expected"), TABLE)
def test_table(action: str, role: str, own: bool, expected: Decision) -> None:
    assert decide(role, action, own) is expected


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_foreign_is_never_more_than_own(action: str, role: str) -> None:
    order = {A: 2, D: 1, H: 0}
    assert order[decide(role, action, False)] <= order[decide(role, action, True)]


@pytest.mark.parametrize("role", ROLES)
def test_nobody_but_an_evaluator_reads_content(role: str) -> None:
    allowed = decide(role, "content.read", True) is A
    assert allowed == (role == "evaluator")


def test_unknown_role_or_action_fails_closed() -> None:
    assert decide("superuser", "content.read", True) is D
    assert decide("admin", "content.delete_everything", True) is D


# --- visibility: scope() in SQL agrees with decide() on every real row -------------------

T0 = datetime(2026, 11, 26, 12, 0, 0)
ACTORS = {
    # name: (org, org kind, role)
    "alice": ("lab-a", "lab", "lab"),
    "bob": ("lab-b", "lab", "lab"),
    "eve": ("agency-a", "agency", "evaluator"),
    "eve2": ("agency-a", "agency", "evaluator"),
    "mal": ("agency-b", "agency", "evaluator"),
    "otto": ("oversight", "oversight", "auditor"),
    "root": ("operator", "operator", "admin"),
}


def _actor(name: str) -> Actor:
    org, _kind, role = ACTORS[name]
    return Actor(id=f"prn_{name}", name=name, org=org, role=role)


def _artifact(session: Session, n: int, org: str, share_with: list[str]) -> Artifact:
    """An upload of ``org`` completed into an artifact shared as completion shares it."""
    up = Upload(
        id=f"up_{n}",
        org=org,
        principal_id="prn_alice" if org == "lab-a" else "prn_bob",
        name=f"model-{n}",
        kind=ArtifactKind.WEIGHTS,
        share_with=share_with,
        part_size=1 << 20,
        max_parts=10,
        recipient="age1...",
        state=UploadState.COMPLETED,
        object_key=f"artifacts/up_{n}.age",
        store_handle="",
        created_at=T0,
        expires_at=T0 + timedelta(days=3),
    )
    art = Artifact(
        id=f"art_{n}",
        upload_id=up.id,
        org=org,
        name=up.name,
        kind=up.kind,
        share_with=share_with,
        size=100,
        header_size=50,
        object_key=up.object_key,
        state=ArtifactState.AVAILABLE,
        submitted_at=T0 + timedelta(minutes=n),
        review_ends_at=T0 + timedelta(days=30),
        manifest={},
        signature="",
        signing_key="",
    )
    session.add(up)
    session.flush()
    session.add(art)
    session.flush()
    session.add_all(ArtifactShare(artifact_id=art.id, org=o) for o in share_with)
    return art


def _request(session: Session, n: int, artifact: Artifact, who: str, granted: bool) -> None:
    org = ACTORS[who][0]
    req = AccessRequest(
        id=f"req_{n}",
        artifact_id=artifact.id,
        org=org,
        principal_id=f"prn_{who}",
        justification="why",
        state=RequestState.APPROVED if granted else RequestState.PENDING,
        created_at=T0 + timedelta(minutes=n),
    )
    session.add(req)
    session.flush()
    if granted:
        session.add(
            Grant(
                id=f"grt_{n}",
                artifact_id=artifact.id,
                request_id=req.id,
                grantee_id=f"prn_{who}",
                org=org,
                not_before=T0,
                not_after=T0 + timedelta(days=1),
                state=GrantState.ACTIVE,
            )
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """Two labs' artifacts shared with one agency each and one with both; requests, grants, entries."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('policy') / 'world.db'}")
    db.create_all()
    with db.session() as s:
        for org, kind in {(o, k) for o, k, _ in ACTORS.values()}:
            s.add(Org(name=org, kind=kind, created_at=T0))
        s.flush()
        for name, (org, _kind, role) in ACTORS.items():
            s.add(Principal(id=f"prn_{name}", name=name, org=org, role=role, created_at=T0))
        s.flush()
        a1 = _artifact(s, 1, "lab-a", ["agency-a"])
        a2 = _artifact(s, 2, "lab-b", ["agency-b"])
        a3 = _artifact(s, 3, "lab-a", ["agency-a", "agency-b"])
        _request(s, 1, a1, "eve", granted=True)
        _request(s, 2, a2, "mal", granted=True)
        _request(s, 3, a3, "eve2", granted=False)
        _request(s, 4, a3, "mal", granted=True)
        for n, name in enumerate(("alice", "bob", "alice")):
            org = ACTORS[name][0]
            s.add(
                SigningKey(
                    id=f"key_{n}",
                    org=org,
                    principal_id=f"prn_{name}",
                    public_key=f"pk{n}",
                    created_at=T0,
                )
            )
        for i, subject in enumerate(["lab-a", "lab-b", None, "lab-a"]):
            audit_store.append(
                s,
                time=T0,
                actor="prn_eve",
                org="agency-a",
                role="evaluator",
                action="artifact.read",
                artifact=f"art_{i}",
                subject_org=subject,
            )
        audit_store.integrate(s)
    yield db
    db.dispose()


def _key(obj: Owned) -> object:
    return obj.index if isinstance(obj, Entry) else obj.id


@pytest.mark.parametrize("kind", OWNED_KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("name", list(ACTORS))
def test_scope_lists_exactly_what_the_table_lets_each_principal_read(
    world: Database, name: str, kind: type[Owned]
) -> None:
    actor = _actor(name)
    with world.session() as session:
        rows = list(session.scalars(select(kind)))
        assert len(rows) >= 3, "every kind needs rows to tell own from foreign"
        readable = {
            _key(o)
            for o in rows
            if decide(actor.role, READ_ACTION[kind], owns(actor, o)) is Decision.ALLOW
        }
        listed = {_key(o) for o in session.scalars(select(kind).where(scope(actor, kind)))}
    assert listed == readable


SEEN = {
    # who sees which artifacts, requests and grants (what the README's role table promises)
    "alice": ({"art_1", "art_3"}, {"req_1", "req_3", "req_4"}, {"grt_1", "grt_4"}),
    "bob": ({"art_2"}, {"req_2"}, {"grt_2"}),
    "eve": ({"art_1", "art_3"}, {"req_1"}, {"grt_1"}),
    "eve2": ({"art_1", "art_3"}, {"req_3"}, set()),
    "mal": ({"art_2", "art_3"}, {"req_2", "req_4"}, {"grt_2", "grt_4"}),
    "otto": ({"art_1", "art_2", "art_3"}, {f"req_{i}" for i in range(1, 5)}, None),
    "root": ({"art_1", "art_2", "art_3"}, {f"req_{i}" for i in range(1, 5)}, None),
}


@pytest.mark.parametrize("name", list(SEEN))
def test_each_role_sees_what_it_is_promised(world: Database, name: str) -> None:
    actor = _actor(name)
    artifacts, requests, grants = SEEN[name]
    with world.session() as session:

        def ids(model: type[Owned]) -> set[object]:
            return {_key(o) for o in session.scalars(select(model).where(scope(actor, model)))}

        assert ids(Artifact) == artifacts
        assert ids(AccessRequest) == requests
        assert ids(Grant) == (grants if grants is not None else {"grt_1", "grt_2", "grt_4"})
        assert ids(Upload) == (
            {"up_1", "up_3"} if name == "alice" else {"up_2"} if name == "bob" else set()
        )
        entries = ids(Entry)
    # Every entry was an agency-a evaluator's: agency-a sees them all, each lab those about it.
    everything = {0, 1, 2, 3}
    expected_entries = {"alice": {0, 3}, "bob": {1}, "eve": everything, "eve2": everything}
    expected_entries["otto"] = everything
    assert entries == expected_entries.get(name, set())
