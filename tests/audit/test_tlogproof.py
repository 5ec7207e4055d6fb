"""c2sp.org/tlog-proof: ``.tlog-proof`` files, and verifying one offline with a policy.

The worked example is the proof at the top of tlog-proof.md (C2SP/C2SP at
5ba5ee830903e91240fc6f9f3a7a9293d49e69c9), whose signatures the spec elides: everything up to
the signature lines is reproduced byte for byte, with our own log and witness keys signing.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.audit import merkle, note, store, trust
from gateway.audit import tlogproof as tp
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.db import Database
from tests.audit.conftest import ORIGIN, fill

SPEC_UNTIL_SIGNATURES = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

"""
LOG = note.Signer(ORIGIN, bytes(range(32)))
W1 = Ed25519Cosigner("witness1.example", bytes([1]) * 32, lambda: 1_700_000_000.0)
W2 = MLDSA44Cosigner("witness2.example", bytes([2]) * 32, lambda: 1_700_000_000.0)
POLICY = trust.parse_policy(
    f"log {LOG.verifier_key}\nwitness w1 {W1.verifier_key}\nwitness w2 {W2.verifier_key}\n"
    "group both all w1 w2\nquorum both\n"
)


def test_the_spec_example_byte_for_byte_up_to_its_signatures() -> None:
    """tlog-proof "Format": header, extra, index, proof lines, empty line, checkpoint."""
    head = SPEC_UNTIL_SIGNATURES.split("\n\n")[0].split("\n")
    fancy = note.Signer("example.com/fancylog", bytes(32))
    text = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n"
    checkpoint = note.sign_note(text, fancy) + "".join(
        note.signature_line(w, text)
        for w in (Ed25519Cosigner(f"witness{i}.example", bytes([i]) * 32) for i in (1, 2, 3))
    )
    proof = tp.TlogProof(
        73894,
        tuple(base64.b64decode(h) for h in head[3:]),
        checkpoint,
        base64.b64decode(head[1][len("extra ") :]),
    )
    data = tp.format_proof(proof)
    assert data.startswith(SPEC_UNTIL_SIGNATURES.encode())
    assert data[len(SPEC_UNTIL_SIGNATURES) :].startswith("— example.com/fancylog ".encode())
    assert tp.parse_proof(data) == proof
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")


def _cosigned(db: Database, *witnesses: Ed25519Cosigner | MLDSA44Cosigner) -> str:
    with db.session() as s:
        signed = store.sign_checkpoint(s, LOG, ORIGIN)
    text = note.parse_note(signed)[0]
    return signed + "".join(note.signature_line(w, text) for w in witnesses)


def _proof(db: Database, index: int, checkpoint: str) -> tp.TlogProof:
    with db.session() as s:
        size = store.size(s)
        return tp.TlogProof(index, tuple(store.inclusion_proof(s, index, size)), checkpoint)


def test_a_gateway_entry_is_proven_offline_from_a_file(db: Database, tmp_path: Path) -> None:
    fill(db, 30)
    proof = _proof(db, 17, _cosigned(db, W1, W2))
    path = tmp_path / ("entry-17" + tp.EXTENSION)
    tp.write_proof(path, proof)
    assert path.read_bytes().startswith(b"c2sp.org/tlog-proof@v1\nindex 17\n")  # no extra line
    with db.session() as s:
        leaf = store.leaf(s, 17)
    ok = tp.verify_proof(tp.read_proof(path), POLICY, leaf=leaf, origin=ORIGIN)
    assert ok.checkpoint.checkpoint.size == 30
    assert set(ok.checkpoint.cosignatures) == {"w1", "w2"}
    assert list(tmp_path.iterdir()) == [path]


def test_each_verification_step_names_its_failure(db: Database) -> None:
    fill(db, 30)
    proof = _proof(db, 17, _cosigned(db, W1, W2))
    with db.session() as s:
        leaf, other = store.leaf(s, 17), store.leaf(s, 18)
    with pytest.raises(tp.InclusionNotProven, match="entry 17"):
        tp.verify_proof(proof, POLICY, leaf=other)
    moved = tp.TlogProof(18, proof.proof, proof.checkpoint)
    with pytest.raises(tp.InclusionNotProven):
        tp.verify_proof(moved, POLICY, leaf=leaf)
    bent = tp.TlogProof(17, (proof.proof[0][::-1], *proof.proof[1:]), proof.checkpoint)
    with pytest.raises(tp.InclusionNotProven):
        tp.verify_proof(bent, POLICY, leaf=leaf)
    under = _proof(db, 17, _cosigned(db, W1))
    with pytest.raises(trust.QuorumNotMet, match="group both needs 2 of 2"):
        tp.verify_proof(under, POLICY, leaf=leaf)
    with pytest.raises(trust.UnknownLog):
        tp.verify_proof(proof, POLICY, leaf=leaf, origin="example.com/another")
    with pytest.raises(TypeError):
        tp.verify_proof(proof, POLICY)
    assert tp.verify_proof(tp.format_proof(proof), POLICY, leaf_hash=merkle.leaf_hash(leaf))


CP = note.sign_note("example.com/log\n1\n" + base64.b64encode(bytes(32)).decode() + "\n", LOG)
H = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"c2sp.org/tlog-proof@v2\nindex 0\n\n{CP}",
        f"index 0\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\nextra \nindex 0\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\nextra YQ\nindex 0\n\n{CP}",  # not padded
        f"c2sp.org/tlog-proof@v1\nextra YR==\nindex 0\n\n{CP}",  # not canonical
        f"c2sp.org/tlog-proof@v1\nindex 01\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\nindex -1\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\n\n{CP}",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{H}\n{CP}",  # no empty line before the checkpoint
        f"c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\n{CP}",
        "c2sp.org/tlog-proof@v1\nindex 0\n" + f"{H}\n" * 65 + f"\n{CP}",
        f"c2sp.org/tlog-proof@v1\nindex 0\n\nexample.com/log\n1\n{H}\n",  # checkpoint unsigned
        "c2sp.org/tlog-proof@v1\nindex 0\n\n" + note.sign_note("just text\n", LOG),
        f"c2sp.org/tlog-proof@v1\nindex 0\nextra YQ==\n\n{CP}",  # extra after the index
        "c2sp.org/tlog-proof@v1\nindex 0\n\n" + CP.replace("\n", "\n" + "9" * 5000, 1),
    ],
)
def test_malformed_proofs_are_refused(text: str) -> None:
    with pytest.raises(tp.MalformedProof):
        tp.parse_proof(text)


def test_a_proof_that_is_not_utf8_or_too_large_is_refused(tmp_path: Path) -> None:
    with pytest.raises(tp.MalformedProof):
        tp.parse_proof(b"c2sp.org/tlog-proof@v1\nindex 0\n\n\xff")
    big = tmp_path / "big.tlog-proof"
    big.write_bytes(b"x" * (tp.MAX_PROOF_BYTES + 1))
    with pytest.raises(tp.MalformedProof, match="over"):
        tp.read_proof(big)
    with pytest.raises(tp.MalformedProof):
        tp.format_proof(tp.TlogProof(0, (bytes(31),), CP))
