"""C2SP signed-note and tlog-checkpoint against the vectors in testdata/note."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from gateway.audit import merkle, note
from gateway.audit.note import Checkpoint
from gateway.keystore import KeyStoreError
from tests.audit.vectorfiles import BASE
from tests.vectors import vectors_dir


def _load(name: str) -> dict:
    return json.loads((vectors_dir("note") / name).read_text())


def _vector_ids(name: str, key: str, field: str) -> list[object]:
    path = BASE / "note" / name
    if not path.is_file():
        return [pytest.param(None, id="note-vectors-missing")]
    return [pytest.param(v[field], id=str(v[field])) for v in json.loads(path.read_text())[key]]


def _by(name: str, key: str, field: str, value: object) -> dict:
    return next(v for v in _load(name)[key] if v[field] == value)


@pytest.mark.parametrize("vid", _vector_ids("signed_notes.json", "vectors", "id"))
def test_signed_note_vector(vid: str | None) -> None:
    v = _by("signed_notes.json", "vectors", "id", vid)
    msg = base64.b64decode(v["note_base64"])
    if v["expect"] == "valid":
        opened = note.open_note(msg, v["verifier_keys"])
        assert opened.text == v["text"]
        got = sorted((s.name, s.key_id.hex()) for s in opened.verified)
        assert got == sorted((s["name"], s["key_id"]) for s in v["verified_signatures"])
        got_unverified = sorted((s.name, s.key_id.hex()) for s in opened.unverified)
        assert got_unverified == sorted(
            (s["name"], s["key_id"]) for s in v["unverified_signatures"]
        )
        return
    reason = v["expect"]
    expected: type[note.NoteError]
    if reason.startswith("reject: no verifiable"):
        expected = note.UnverifiedNote
    elif reason.startswith("reject: invalid signature"):
        expected = note.InvalidSignature
    else:
        assert reason.startswith("reject: malformed"), reason
        expected = note.MalformedNote
    with pytest.raises(expected):
        note.open_note(msg, v["verifier_keys"])


def test_signing_reproduces_the_golden_note() -> None:
    v = _by("signed_notes.json", "vectors", "id", "go-sign-golden")
    signer = note.Signer.from_private_key(v["signer_key"])
    assert note.sign_note(v["text"], signer).encode() == base64.b64decode(v["note_base64"])
    assert signer.verifier_key == v["verifier_keys"][0]


@pytest.mark.parametrize("vkey", _vector_ids("verifier_keys.json", "valid_vkeys", "vkey"))
def test_valid_verifier_key(vkey: str | None) -> None:
    v = _by("verifier_keys.json", "valid_vkeys", "vkey", vkey)
    ver = note.parse_verifier_key(v["vkey"])
    assert (ver.name, ver.key_id.hex(), ver.public_key.hex()) == (
        v["name"],
        v["key_id"],
        v["public_key_hex"],
    )
    assert ver.vkey == v["vkey"]
    assert note.key_id(ver.name, ver.public_key).hex() == v["key_id"]


@pytest.mark.parametrize("vkey", _vector_ids("verifier_keys.json", "invalid_vkeys", "vkey"))
def test_invalid_verifier_key(vkey: str | None) -> None:
    v = _by("verifier_keys.json", "invalid_vkeys", "vkey", vkey)
    with pytest.raises(note.InvalidKey):
        note.parse_verifier_key(v["vkey"])


def test_every_proper_prefix_of_a_vkey_is_refused() -> None:
    vkey = _load("verifier_keys.json")["valid_vkeys"][1]["vkey"]
    for end in range(len(vkey)):
        with pytest.raises(note.InvalidKey):
            note.parse_verifier_key(vkey[:end])


def test_signer_keys_derive_their_published_vkeys() -> None:
    for k in _load("verifier_keys.json")["signer_keys_go_format"]["keys"]:
        signer = note.Signer(k["name"], bytes.fromhex(k["seed_hex"]))
        assert signer.public_key.hex() == k["derived_public_key_hex"]
        assert signer.verifier_key == k["matching_vkey"]
        if "skey" in k:
            assert signer.private_key() == k["skey"]
            assert note.Signer.from_private_key(k["skey"]).verifier_key == k["matching_vkey"]


@pytest.mark.parametrize("desc", _vector_ids("checkpoint_bodies.json", "cases", "desc"))
def test_checkpoint_body(desc: str | None) -> None:
    case = _by("checkpoint_bodies.json", "cases", "desc", desc)
    caveats = " ".join(case.get("c2sp_strict_caveats", []))
    if case["go_expect"] == "invalid" or "empty extension lines" in caveats:
        # C2SP forbids empty extension lines, which the Go parser lets through.
        with pytest.raises(note.MalformedCheckpoint):
            note.parse_checkpoint(case["body"], hash_size=None)
        return
    cp = note.parse_checkpoint(case["body"], hash_size=None)
    want = case["want"]
    assert (cp.origin, cp.size, cp.root) == (
        want["origin"],
        want["tree_size"],
        want["root_hash_utf8"].encode(),
    )
    assert "".join(e + "\n" for e in cp.extensions) == case["want_rest"]
    assert note.format_checkpoint(cp) == case["body"]
    if "not 32" in caveats:
        with pytest.raises(note.MalformedCheckpoint):
            note.parse_checkpoint(case["body"])


def test_serverless_log_checkpoints_verify_and_match_the_leaves() -> None:
    index = _load("serverless_log_checkpoints.json")
    leaves = [bytes.fromhex(x["hex"]) for x in index["leaves"]]
    assert len(index["checkpoints"]) == 16
    rng = merkle.CompactRange()
    roots = [rng.root()]
    for leaf in leaves:
        rng.append(merkle.leaf_hash(leaf))
        roots.append(rng.root())
    for c in index["checkpoints"]:
        text = (vectors_dir("note") / c["file"]).read_bytes()
        cp = note.open_checkpoint(text, [index["verifier_key"]], origin=index["origin"])
        assert (cp.size, cp.root.hex()) == (c["tree_size"], c["root_hash_hex"])
        assert roots[cp.size] == cp.root
        with pytest.raises(note.MalformedCheckpoint):
            note.open_checkpoint(text, [index["verifier_key"]], origin="example.com/other")


def test_sumdb_tree_notes_are_checkpoints() -> None:
    for vid in ("go-sumdb-test-tree-5", "go-sumdb-test-tree-6"):
        v = _by("signed_notes.json", "vectors", "id", vid)
        cp = note.open_checkpoint(base64.b64decode(v["note_base64"]), v["verifier_keys"])
        want = v["checkpoint"]
        assert (cp.origin, cp.size, base64.b64encode(cp.root).decode()) == (
            want["origin"],
            want["tree_size"],
            want["root_hash_base64"],
        )


def test_checkpoint_round_trip_with_extensions() -> None:
    signer = note.Signer.generate("gateway.test/audit")
    cp = Checkpoint("gateway.test/audit", 42, merkle.leaf_hash(b"x"), ("ext one", "ext-two"))
    text = note.sign_checkpoint(cp, signer)
    assert note.open_checkpoint(text, [signer.verifier_key]) == cp
    other = note.Signer.generate("gateway.test/audit")
    with pytest.raises(note.UnverifiedNote):
        note.open_checkpoint(text, [other.verifier_key])
    forged = text.replace("\n42\n", "\n43\n")
    with pytest.raises(note.InvalidSignature):
        note.open_checkpoint(forged, [signer.verifier_key])


def test_signing_refuses_text_a_verifier_would_refuse() -> None:
    signer = note.Signer.generate("k")
    for text in ("no final newline", "bell \x07\n", ""):
        with pytest.raises(note.MalformedNote):
            note.sign_note(text, signer)
    with pytest.raises(note.InvalidKey):
        note.Signer.generate("has space")


def test_signer_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    signer = note.create_signer_file(path, "gateway.test/audit")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = note.load_signer(path)
    assert loaded.verifier_key == signer.verifier_key
    assert note.open_note(note.sign_note("hi\n", loaded), [signer.verifier_key]).text == "hi\n"
    assert "PRIVATE" not in repr(loaded)
    with pytest.raises(FileExistsError):
        note.create_signer_file(path, "gateway.test/audit")
    path.chmod(0o644)
    with pytest.raises(KeyStoreError):
        note.load_signer(path)


def test_a_signer_file_with_a_wrong_key_id_is_refused(tmp_path: Path) -> None:
    signer = note.Signer.generate("n")
    bad = signer.private_key().replace(f"+{signer.key_id.hex()}+", "+00000000+")
    with pytest.raises(note.InvalidKey):
        note.Signer.from_private_key(bad)


def test_one_key_id_formula_for_every_signature_type() -> None:
    """signed-note "Signatures": key ID = SHA-256(name || 0x0A || type || public key)[:4]."""
    import hashlib

    from gateway.audit import sigtypes

    signer = note.Signer("example.com/foo", bytes(range(32)))
    assert note.key_id(signer.name, signer.public_key) == signer.key_id
    assert note.key_id(signer.name, sigtypes.SIG_ED25519, signer.public_key) == signer.key_id
    for sig_type in (0x01, 0x04, 0x06, 0x42):
        want = hashlib.sha256(b"example.com/foo\n" + bytes([sig_type]) + signer.public_key)
        assert note.key_id(signer.name, sig_type, signer.public_key) == want.digest()[:4]
    assert sorted(note.SIGNATURE_TYPES) == [0x01, 0x04, 0x06]


def test_a_verifier_key_of_a_known_type_is_refused_where_another_is_required() -> None:
    signer = note.Signer("example.com/foo", bytes(range(32)))
    assert note.parse_verifier_key(signer.verifier_key, types={0x01}) == signer.verifier
    with pytest.raises(note.InvalidKey, match="signature type 0x01, want 0x04, 0x06"):
        note.parse_verifier_key(signer.verifier_key, types={0x06, 0x04})


def test_parse_note_returns_the_signature_bytes_in_order() -> None:
    a, b = note.Signer("a", bytes(32)), note.Signer("b", bytes(range(32)))
    signed = note.sign_note("hello\n", a, b)
    text, sigs = note.parse_note(signed)
    assert text == "hello\n"
    assert [(s.name, s.key_id) for s in sigs] == [("a", a.key_id), ("b", b.key_id)]
    assert sigs[0].signature == a.sign(b"hello\n")
    assert "".join(s.line for s in sigs) == signed[len("hello\n\n") :]


def _noncanonical(b64: str) -> str:
    """The same bytes in base64 whose unused trailing bits are not zero."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = b64.rstrip("=")
    assert len(body) % 4 in (2, 3), "needs padding to have spare bits"
    flipped = alphabet[alphabet.index(body[-1]) ^ 1]
    return body[:-1] + flipped + "=" * (len(b64) - len(body))


def test_every_distinct_line_by_a_trusted_key_is_verified() -> None:
    signer = note.Signer("example.com/log", bytes(32))
    signed = note.sign_checkpoint(Checkpoint("example.com/log", 3, merkle.leaf_hash(b"r")), signer)
    bogus = note.SIG_PREFIX + signer.name + " "
    bogus += base64.b64encode(signer.key_id + bytes(64)).decode() + "\n"

    with pytest.raises(note.InvalidSignature):  # the repeated key's second line is checked too
        note.open_note(signed + bogus, [signer.verifier])
    repeated = signed + signed.split("\n\n", 1)[1]  # the very same line twice: one signature
    opened = note.open_note(repeated, [signer.verifier])
    assert [(s.name, s.line) for s in opened.verified] == [
        (signer.name, signed.split("\n\n", 1)[1])
    ]


def test_a_root_hash_or_key_in_non_canonical_base64_is_refused() -> None:
    signer = note.Signer("example.com/log", bytes(32))
    text = note.format_checkpoint(Checkpoint("example.com/log", 3, merkle.leaf_hash(b"r")))
    origin, size, root, _ = text.split("\n")
    other = "\n".join([origin, size, _noncanonical(root)]) + "\n"
    assert base64.b64decode(_noncanonical(root)) == base64.b64decode(root)

    with pytest.raises(note.MalformedCheckpoint, match="canonical"):
        note.parse_checkpoint(other)
    with pytest.raises(note.MalformedCheckpoint):
        note.open_checkpoint(note.sign_note(other, signer), [signer.verifier])
    from gateway.audit.cosignature import MLDSA44Cosigner

    vkey = MLDSA44Cosigner("witness.example/w1", bytes(32)).verifier_key  # 1313 bytes: padded
    name, kid, key = vkey.split("+", 2)
    assert note.parse_verifier_key(vkey).vkey == vkey
    with pytest.raises(note.InvalidKey):
        note.parse_verifier_key(f"{name}+{kid}+{_noncanonical(key)}")


def test_a_signature_line_is_read_as_go_reads_it_and_kept_canonical() -> None:
    signer = note.Signer("example.com/log", bytes(32))
    signed = note.sign_note("hello\n", signer)
    line = signed.split("\n\n", 1)[1]
    name, b64 = line[len(note.SIG_PREFIX) : -1].split(" ")
    odd = signed.replace(line, f"{note.SIG_PREFIX}{name} {_noncanonical(b64)}\n")

    assert note.parse_note(odd)[1][0].line == line
    assert note.open_note(odd, [signer.verifier]).verified[0].line == line


@pytest.mark.parametrize("digits", [20, 21, 5000])
def test_a_tree_size_is_at_most_twenty_digits(digits: int) -> None:
    text = f"example.com/log\n{'9' * digits}\n{base64.b64encode(bytes(32)).decode()}\n"
    with pytest.raises(note.MalformedCheckpoint, match="64-bit"):
        note.parse_checkpoint(text)
    assert note.parse_checkpoint(text.replace("9" * digits, str((1 << 64) - 1))).size == 2**64 - 1
