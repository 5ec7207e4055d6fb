"""c2sp.org/tlog-witness, the log's side: add-checkpoint bodies and the witness's answers.

The worked examples are the "add-checkpoint" request and response bodies of tlog-witness.md
(C2SP/C2SP at 5ba5ee830903e91240fc6f9f3a7a9293d49e69c9); the origin hash is checked against
the directory name sunlight's test witness stores that log under
(FiloSottile/sunlight ed0bc38779aeb73c99cee6ab0c294a6ce9a2d9ba, cmd/skylight/testdata/witness/).
"""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.audit import merkle, note
from gateway.audit import witness as wp
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner

SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
).encode()
SPEC_RESPONSE = (
    "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"
    "— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n"
    "— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n"
).encode()
CHECKPOINT = SPEC_REQUEST.split(b"\n\n", 1)[1].decode()
LOG = note.Signer("example.com/log", bytes(32))
TEXT = note.format_checkpoint(note.Checkpoint("example.com/log", 7, merkle.leaf_hash(b"r")))
SIGNED = note.sign_note(TEXT, LOG)
ED = Ed25519Cosigner("witness.test/w1", bytes(32), lambda: 1234.0)
ML = MLDSA44Cosigner("witness.test/w1", bytes(32), lambda: 1234.0)


def test_the_spec_request_body_round_trips_byte_for_byte() -> None:
    """tlog-witness "add-checkpoint": the example request body."""
    req = wp.parse_add_checkpoint(SPEC_REQUEST)
    assert req.old_size == 20852014
    assert [base64.b64encode(h).decode() for h in req.proof][
        0
    ] == "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw="
    assert len(req.proof) == 4 and req.checkpoint == CHECKPOINT.encode()
    assert wp.format_add_checkpoint(req.old_size, req.proof, CHECKPOINT) == SPEC_REQUEST


def test_an_old_size_of_zero_has_no_proof_lines() -> None:
    assert wp.format_add_checkpoint(0, [], SIGNED) == b"old 0\n\n" + SIGNED.encode()
    with pytest.raises(ValueError):
        wp.format_add_checkpoint(1, [bytes(32)] * 64, SIGNED)  # "MUST NOT send more than 63"
    with pytest.raises(ValueError):
        wp.format_add_checkpoint(1, [bytes(31)], SIGNED)


@pytest.mark.parametrize(
    "body",
    [
        b"old 01\n\n" + SIGNED.encode(),  # leading zero
        b"old -1\n\n" + SIGNED.encode(),
        b"old  1\n\n" + SIGNED.encode(),
        b"Old 1\n\n" + SIGNED.encode(),
        b"old 18446744073709551616\n\n" + SIGNED.encode(),  # 2**64
        b"old 1\n" + SIGNED.encode(),  # no empty line before the checkpoint
        b"old 1\n\n",  # no checkpoint
        b"old 1\nAAAA\n\n" + SIGNED.encode(),  # not a 32-byte hash
        b"old 1\n" + base64.b64encode(bytes(32))[:-1] + b"\n\n" + SIGNED.encode(),
        b"old 1\r\n\r\n" + SIGNED.encode(),
        b"old 1\n" + b"\n".join([base64.b64encode(bytes(32))] * 64) + b"\n\n" + SIGNED.encode(),
    ],
)
def test_malformed_request_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(wp.MalformedRequest):
        wp.parse_add_checkpoint(body)


def test_63_proof_lines_are_accepted() -> None:
    body = wp.format_add_checkpoint(9, [bytes([i]) * 32 for i in range(63)], SIGNED)
    assert len(wp.parse_add_checkpoint(body).proof) == 63


def test_409_carries_the_size_as_text_x_tlog_size() -> None:
    """tlog-witness: "the tree size of the latest cosigned checkpoint in decimal, followed by a newline"."""
    assert wp.parse_response(409, "text/x.tlog.size", b"3\n", SIGNED, []) == wp.Conflict(3)
    assert wp.parse_conflict("text/x.tlog.size; charset=utf-8", b"0\n") == wp.Conflict(0)
    for ctype, body in (
        ("text/plain", b"3\n"),
        ("text/x.tlog.size", b"3"),
        ("text/x.tlog.size", b"03\n"),
        ("text/x.tlog.size", b"x\n"),
    ):
        with pytest.raises(wp.BadWitnessResponse):
            wp.parse_conflict(ctype, body)


def test_200_cosignatures_are_verified_with_the_witness_keys() -> None:
    body = (note.signature_line(ML, TEXT) + note.signature_line(ED, TEXT)).encode()
    got = wp.parse_response(200, "text/plain", body, SIGNED, [ED.verifier, ML.verifier])
    assert isinstance(got, list)
    assert [(c.sig_type, c.timestamp) for c in got] == [(0x06, 1234), (0x04, 1234)]
    merged = wp.add_cosignatures(SIGNED, got + got)
    assert merged == SIGNED + body.decode()
    assert wp.add_cosignatures(merged, got) == merged
    assert note.open_note(merged, [LOG.verifier, ED.verifier, ML.verifier]).text == TEXT


def test_200_lines_by_unknown_keys_are_ignored_but_one_by_the_witness_is_needed() -> None:
    """tlog-witness: "The client MUST ignore any cosignatures from unknown keys"."""
    with pytest.raises(wp.BadWitnessResponse, match="no cosignature by the witness"):
        wp.parse_cosignatures(CHECKPOINT, SPEC_RESPONSE, [ED.verifier])
    body = SPEC_RESPONSE + note.signature_line(ED, note.parse_note(CHECKPOINT)[0]).encode()
    assert [c.name for c in wp.parse_cosignatures(CHECKPOINT, body, [ED.verifier])] == [
        "witness.test/w1"
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"cosigned\n",
        note.signature_line(ED, TEXT.replace("7", "8")).encode(),  # over another tree
        (
            "— witness.test/w1 "
            + base64.b64encode(ED.key_id + ED.sign_at(TEXT.encode(), 0)).decode()
            + "\n"
        ).encode(),
        note.signature_line(ED, TEXT).encode()[:-1],  # no final newline
    ],
)
def test_bad_200_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(wp.BadWitnessResponse):
        wp.parse_cosignatures(SIGNED, body, [ED.verifier])


def test_refusals_say_what_the_status_means() -> None:
    for status, word in (
        (400, "malformed"),
        (403, "signature"),
        (404, "origin"),
        (422, "consistency"),
        (503, "unexpected"),
    ):
        with pytest.raises(wp.WitnessRefused, match=word) as err:
            wp.parse_response(status, "text/plain", b"nope\n", SIGNED, [ED.verifier])
        assert err.value.status == status


def test_origin_hash_is_the_monitoring_path() -> None:
    """tlog-witness "Monitor Retrieval Mechanism": lowercase hex SHA-256 of the origin."""
    assert wp.origin_hash("rome2026h1.example.org") == (
        "000de184301123b9278c086a7d9f68c9577e83872224c197058fd90784ea9706"
    )


def test_cosignature_timestamps_are_big_endian() -> None:
    line = note.signature_line(ED, TEXT)
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[4:12] == struct.pack(">Q", 1234)
