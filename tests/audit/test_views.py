"""Views proven from the leaves: one org's chain followed back, and filtered lists compared."""

from __future__ import annotations

import json

import pytest

from gateway.audit import leaf as leafmod
from gateway.audit import merkle, note, store, views
from gateway.audit.views import Served, check_org_view
from gateway.db import Database
from tests.audit import reference
from tests.audit.conftest import ORIGIN, add_entry


def _heads(s: object) -> None:
    add_entry(s, 0, action=leafmod.HEADS_ACTION, actor="cli", org="operator", subject_org=None)


@pytest.fixture
def logged(db: Database) -> Database:
    """lab-a's entries at 0, 2, 5 (heads), 6, 9 (heads), 10; agency-b's at 1, 3, 4 (heads), 7, 8 (heads).

    Each publication's run of heads entries pins agency-b, then lab-a (org name order).
    """
    with db.session() as s:
        for i, (org, subject) in enumerate(
            [("lab-a", "lab-a"), ("agency-b", None), ("lab-a", "lab-a"), ("agency-b", None)]
        ):
            add_entry(s, i, org=org, subject_org=subject)
        _heads(s)  # 4, 5
        add_entry(s, 6, org="lab-a", subject_org="lab-a")
        add_entry(s, 7, org="agency-b", subject_org=None)
        _heads(s)  # 8, 9
        add_entry(s, 10, org="lab-a", subject_org="lab-a")
    return db


def _served(
    db: Database, org: str, size: int | None = None
) -> tuple[note.Checkpoint, list[Served]]:
    with db.session() as s:
        cp = store.checkpoint(s, ORIGIN)
        if size is not None:
            cp = note.Checkpoint(ORIGIN, size, store.root(s, size))
        items = [
            Served(e.index, e.leaf, e.entry(), store.inclusion_proof(s, e.index, cp.size))
            for e in store.entries(s, 0, 1000, concerning=org)
            if e.index < cp.size
        ]
    return cp, items


def test_a_complete_view_is_ok(logged: Database) -> None:
    cp, items = _served(logged, "lab-a")
    v = check_org_view("lab-a", cp, items)
    assert v.ok and (v.entries, v.complete_to) == (4, 9), v.message
    assert v.message == (
        "ok: 4 entries about lab-a, chain complete to index 9; "
        "1 later entries linked to it, until the next heads entry"
    )
    cp, items = _served(logged, "agency-b", size=9)
    v = check_org_view("agency-b", cp, items)
    assert v.ok and v.message == "ok: 3 entries about agency-b, chain complete to index 8"


def test_since_an_earlier_checkpoint_only_the_chain_after_its_heads_entry_is_needed(
    logged: Database,
) -> None:
    cp, items = _served(logged, "lab-a")
    later = [i for i in items if i.index >= 5]
    v = check_org_view("lab-a", cp, later, since=7)
    assert v.ok and v.entries == 2 and "from heads entry 5" in v.message, v.message
    assert not check_org_view("lab-a", cp, later, since=5).ok  # no heads entry below 5 served
    assert check_org_view("lab-a", cp, items, since=7).ok  # more than needed is fine


@pytest.mark.parametrize(
    ("change", "index", "words"),
    [
        (lambda items: [i for i in items if i.index != 2], 2, "entry 2 is missing"),
        (lambda items: [i for i in items if i.index != 9], 9, "entry 9 is missing"),
        (lambda items: items[:2] + items[3:], 5, "entry 5 is missing"),
        (lambda items: [items[1], items[0], *items[2:]], 0, "out of order"),
        (lambda items: [*items, items[-1]], 10, "out of order"),
        (
            lambda items: [
                Served(i.index, i.leaf, {**(i.listed or {}), "action": "x"}, i.proof)
                if i.index == 6
                else i
                for i in items
            ],
            6,
            "listed unlike its leaf",
        ),
        (
            lambda items: [
                Served(i.index, i.leaf, i.listed, i.proof[:-1]) if i.index == 2 else i
                for i in items
            ],
            2,
            "inclusion proof does not verify",
        ),
    ],
)
def test_a_view_with_a_hole_or_a_lie_names_the_entry(
    logged: Database, change: object, index: int, words: str
) -> None:
    cp, items = _served(logged, "lab-a")
    v = check_org_view("lab-a", cp, change(items))  # type: ignore[operator]
    assert (v.ok, v.bad_index) == (False, index), v.message
    assert words in v.message, v.message


def test_another_orgs_entry_is_foreign(logged: Database) -> None:
    cp, items = _served(logged, "lab-a")
    _, theirs = _served(logged, "agency-b")
    mixed = sorted([*items, theirs[0]], key=lambda i: i.index)
    v = check_org_view("lab-a", cp, mixed)
    assert (v.ok, v.bad_index) == (False, 1) and "foreign" in v.message, v.message


def test_no_heads_entry_proves_nothing(db: Database) -> None:
    with db.session() as s:
        add_entry(s, 0, org="lab-a", subject_org="lab-a")
    cp, items = _served(db, "lab-a")
    v = check_org_view("lab-a", cp, items)
    assert not v.ok and "no heads entry" in v.message


def test_a_chain_that_skips_a_served_entry_is_inconsistent(db: Database) -> None:
    """A leaf whose ``prev`` jumps over an entry of the org (as the verifier also refuses)."""
    with db.session() as s:
        for i in range(3):
            add_entry(s, i, org="lab-a", subject_org=None)
        _heads(s)
    cp, items = _served(db, "lab-a")
    forged = json.loads(items[2].leaf)
    forged["prev"] = {"lab-a": 0}
    leaf = leafmod.canonical_json(forged)
    # Checked as if the log had signed it: the tree rebuilt over the forged leaves.
    leaves = [i.leaf for i in items[:2]] + [leaf, items[3].leaf]
    rng = merkle.CompactRange()
    for x in leaves:
        rng.append(merkle.leaf_hash(x))
    forged_cp = note.Checkpoint(ORIGIN, 4, rng.root())
    served = [Served(i, x, json.loads(x), reference.path(i, leaves)) for i, x in enumerate(leaves)]
    v = check_org_view("lab-a", forged_cp, served)
    assert (v.ok, v.bad_index) == (False, 1) and "does not reach it" in v.message, v.message


def test_lists_are_compared_with_what_the_leaves_say(logged: Database) -> None:
    m = views.Memberships()
    with logged.session() as s:
        for index, leaf in store.iter_leaves(s):
            m.add(index, leaf)
        pairs = {e.index: e.leaf for e in store.entries(s, 0, 1000)}
    assert "lab-a" in m.values("concerning") and "upload.create" in m.values("action")
    expected = list(m.indexes[("concerning", "lab-a")])
    assert expected == [0, 2, 5, 6, 9, 10]
    honest = [(i, pairs[i]) for i in expected]
    assert views.compare("concerning", "lab-a", expected, honest) is None
    assert views.compare("concerning", "lab-a", expected, honest[1:]) == (
        0,
        "entry 0 is left out of the list served for concerning=lab-a",
    )
    assert views.compare("concerning", "lab-a", expected, honest[:-1])[0] == 10  # type: ignore[index]
    intruder = sorted([*honest, (1, pairs[1])])
    assert views.compare("concerning", "lab-a", expected, intruder)[0] == 1  # type: ignore[index]
