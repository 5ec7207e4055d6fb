"""The v2 leaf: its exact bytes, what it refuses, whom it concerns, its chain and its columns."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from gateway.audit import leaf as leafmod
from gateway.audit.tiles import MAX_ENTRY_SIZE

V2 = (
    b'{"action":"key.release","actor":"prn_1","artifact":"art_1","details":{"n":1},'
    b'"grant":"grt_1","index":9,"ip":"::1","org":"agency-a","outcome":"ok",'
    b'"prev":{"agency-a":4,"lab-a":null},"request_id":"req_1","role":"evaluator",'
    b'"subject_org":"lab-a","time":"2026-11-26T12:00:00.000250Z","v":2}'
)


def _fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "index": 9,
        "time": datetime(2026, 11, 26, 12, 0, 0, 250),
        "actor": "prn_1",
        "org": "agency-a",
        "role": "evaluator",
        "action": "key.release",
        "artifact": "art_1",
        "grant": "grt_1",
        "subject_org": "lab-a",
        "outcome": "ok",
        "request_id": "req_1",
        "ip": "::1",
        "details": {"n": 1},
        "prev": {"agency-a": 4, "lab-a": None},
    }
    fields.update(changes)
    return fields


def _bytes(**changes: Any) -> bytes:
    entry = json.loads(V2)
    entry.update(changes)
    return leafmod.canonical_json(entry)


def test_a_v2_leaf_keeps_its_bytes() -> None:
    assert leafmod.encode_leaf(**_fields()) == V2
    assert leafmod.decode_leaf(V2)["prev"] == {"agency-a": 4, "lab-a": None}
    assert leafmod.version(leafmod.decode_leaf(V2)) == 2


def test_v1_leaves_still_decode() -> None:
    v1 = leafmod.encode_leaf_v1(
        **{k: v for k, v in _fields().items() if k not in ("subject_org", "prev")}
    )
    entry = leafmod.decode_leaf(v1)
    assert leafmod.version(entry) == 1 and "subject_org" not in entry
    assert leafmod.concerns(entry) == ()
    assert "subject_org" not in leafmod.columns(entry)


@pytest.mark.parametrize(
    "bad",
    [
        _bytes(v=1),
        _bytes(v=2.0),
        _bytes(v=True),
        _bytes(subject_org=5),
        _bytes(actor=None),
        _bytes(details=[]),
        _bytes(time="2026-11-26 12:00:00Z"),
        _bytes(time="2026-11-26T12:00:00.000Z"),  # not the log's own form of that time
        _bytes(time="2026-11-26T12:00:00+00:00"),
        _bytes(prev=[]),
        _bytes(prev={"agency-a": 9, "lab-a": None}),  # not an earlier entry
        _bytes(prev={"agency-a": -1, "lab-a": None}),
        _bytes(prev={"agency-a": True, "lab-a": None}),
        _bytes(prev={"agency-a": 4}),  # lab-a is concerned too
        _bytes(prev={"agency-a": 4, "lab-a": None, "lab-b": 2}),  # lab-b is not
        # an org's heads entry names no other org
        _bytes(action=leafmod.HEADS_ACTION, prev={"agency-a": 4, "lab-a": 3}),
        _bytes(action=leafmod.HEADS_ACTION, prev={"agency-a": 4}),
        V2.replace(b',"v":2', b""),  # the v2 fields without their version
    ],
)
def test_leaves_the_log_cannot_write_are_refused(bad: bytes) -> None:
    with pytest.raises(leafmod.LeafError):
        leafmod.decode_leaf(bad)


def test_whom_an_entry_concerns() -> None:
    entry = leafmod.decode_leaf(V2)
    assert leafmod.concerns(entry) == ("agency-a", "lab-a")
    assert leafmod.concerns({**entry, "subject_org": None}) == ("agency-a",)
    assert leafmod.concerns({**entry, "subject_org": "agency-a"}) == ("agency-a",)
    hidden = {**entry, "outcome": "denied", "details": {"reason": leafmod.HIDDEN}}
    # A 404's entry is the owner's alone: the actor's org must not learn who owns the object.
    assert leafmod.concerns(hidden) == ("lab-a",)
    assert leafmod.concerns({**hidden, "subject_org": None}) == ()
    forbidden = {**hidden, "details": {"reason": "forbidden"}}
    assert leafmod.concerns(forbidden) == ("agency-a", "lab-a")
    # An org's heads entry concerns that org alone, whoever wrote it.
    heads = {**entry, "action": leafmod.HEADS_ACTION, "prev": {"lab-a": 3}}
    assert leafmod.concerns(heads) == ("lab-a",) and not leafmod.shared_heads(heads)
    # The shared heads entry of older logs concerns every org it lists.
    shared = {**heads, "subject_org": None, "prev": {"x": 1, "a": None}}
    assert leafmod.concerns(shared) == ("a", "x") and leafmod.shared_heads(shared)


def test_heads_entries_of_both_forms_decode() -> None:
    own = _bytes(action=leafmod.HEADS_ACTION, org="operator", prev={"lab-a": 3})
    assert leafmod.concerns(leafmod.decode_leaf(own)) == ("lab-a",)
    shared = _bytes(action=leafmod.HEADS_ACTION, subject_org=None, prev={"a": 1, "b": None})
    assert leafmod.concerns(leafmod.decode_leaf(shared)) == ("a", "b")


def test_the_chain_links_each_concerned_org_to_its_head() -> None:
    heads = {"lab-a": 3, "agency-a": 7, "lab-b": 8}
    assert leafmod.link(heads, ["lab-a", "agency-b", "lab-a"]) == {"agency-b": None, "lab-a": 3}
    assert leafmod.link({}, []) == {}


def test_columns_are_the_leaf_fields() -> None:
    assert leafmod.columns(leafmod.decode_leaf(V2)) == {
        "time": datetime(2026, 11, 26, 12, 0, 0, 250),
        "actor": "prn_1",
        "org": "agency-a",
        "role": "evaluator",
        "action": "key.release",
        "artifact": "art_1",
        "grant": "grt_1",
        "subject_org": "lab-a",
        "outcome": "ok",
        "request_id": "req_1",
    }


def test_an_entry_past_the_entry_bundle_limit_is_refused() -> None:
    overhead = len(leafmod.encode_leaf(**_fields(details={"x": ""})))
    fits = leafmod.encode_leaf(**_fields(details={"x": "a" * (MAX_ENTRY_SIZE - overhead)}))
    assert len(fits) == MAX_ENTRY_SIZE == 65_535
    with pytest.raises(leafmod.EntryTooLarge, match="more than the log's limit of 65535"):
        leafmod.encode_leaf(**_fields(details={"x": "a" * (MAX_ENTRY_SIZE - overhead + 1)}))
