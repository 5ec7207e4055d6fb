"""Canonical JSON: the exact bytes of audit leaves and signed manifests, pinned."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gateway import canonical
from gateway import manifest as mf
from gateway.audit import leaf

# Written by the encoders before they shared one implementation: these bytes are hashed
# into the log and signed by labs, so they must never change.
LEAF = (
    b'{"action":"artifact.read","actor":"prn_1","artifact":"art_1",'
    b'"details":{"a":"\xe2\x80\xa8 \xc3\xa9 \\\\","b":[1,2.5,true,null]},"grant":null,'
    b'"index":7,"ip":"::1","org":"lab-\xc3\xa9","outcome":"ok","request_id":"req\\"1",'
    b'"role":"lab","time":"2026-11-26T12:00:00Z"}'
)
MANIFEST = (
    b'{"ciphertext":{"part_size":8388608,"parts_sha256":"' + b"ab" * 32 + b'","size":1000},'
    b'"kind":"weights","name":"mod\xc3\xa8le \xe2\x98\x83","plaintext":{"sha256":"'
    + b"cd" * 32
    + b'","size":800},"upload":"up_1","version":1}'
)


def _leaf(time: datetime) -> bytes:
    return leaf.encode_leaf_v1(
        index=7,
        time=time,
        actor="prn_1",
        org="lab-é",
        role="lab",
        action="artifact.read",
        artifact="art_1",
        grant=None,
        outcome="ok",
        request_id='req"1',
        ip="::1",
        details={"b": [1, 2.5, True, None], "a": "\u2028 é \\"},
    )


def _manifest() -> dict[str, Any]:
    return {
        "version": 1,
        "upload": "up_1",
        "name": "modèle ☃",
        "kind": "weights",
        "ciphertext": {"size": 1000, "part_size": 8 << 20, "parts_sha256": "ab" * 32},
        "plaintext": {"size": 800, "sha256": "cd" * 32},
    }


def test_an_audit_leaf_keeps_its_bytes() -> None:
    assert _leaf(datetime(2026, 11, 26, 12, 0, 0)) == LEAF
    with_micro = LEAF.replace(b"12:00:00Z", b"12:00:00.000250Z")
    assert _leaf(datetime(2026, 11, 26, 12, 0, 0, 250)) == with_micro
    aware = datetime(2026, 11, 26, 14, 0, 0, 250, tzinfo=timezone(timedelta(hours=2)))
    assert _leaf(aware) == with_micro
    assert leaf.decode_leaf(LEAF)["details"] == {"a": "\u2028 é \\", "b": [1, 2.5, True, None]}


def test_a_manifest_keeps_its_signed_bytes() -> None:
    assert mf.canonical_json(_manifest()) == MANIFEST
    key = mf.generate_signing_key()
    signature = mf.sign(_manifest(), key)
    key.verify_key.verify(MANIFEST, base64.b64decode(signature))


def test_both_formats_are_the_one_canonical_encoding() -> None:
    for value in (_manifest(), leaf.decode_leaf(LEAF), [{"z": 1, "a": {"é": None}}]):
        assert leaf.canonical_json(value) == canonical.canonical_json(value)
        assert mf.canonical_json(value) == canonical.canonical_json(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"x": float("nan")}, ValueError),
        ({"x": float("inf")}, ValueError),
        ({"x": b"bytes"}, TypeError),
        ({"x": datetime.now(UTC)}, TypeError),
        ({"x": "\ud800"}, UnicodeEncodeError),
    ],
)
def test_values_without_a_canonical_form_are_refused(value: object, error: type) -> None:
    with pytest.raises(error):
        canonical.canonical_json(value)
    with pytest.raises(error):
        leaf.canonical_json(value)


def test_hex64_is_exactly_64_lowercase_hex_digits() -> None:
    assert canonical.HEX64.fullmatch("0f" * 32)
    for bad in ("0F" * 32, "0f" * 31, "0f" * 32 + "0", "0f" * 32 + "\n", "g" * 64):
        assert not canonical.HEX64.fullmatch(bad)
