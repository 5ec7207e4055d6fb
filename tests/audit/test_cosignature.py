"""c2sp.org/tlog-cosignature: cosignature messages, key IDs, vkeys, signing and verification.

Vectors:

- The examples in tlog-cosignature.md (C2SP/C2SP at 5ba5ee830903e91240fc6f9f3a7a9293d49e69c9):
  the cosigned checkpoint of the introduction and the "Ed25519 signed message" example.
- FiloSottile/sunlight at ed0bc38779aeb73c99cee6ab0c294a6ce9a2d9ba,
  ``cmd/skylight/testdata/gen.go``: deterministic Ed25519 cosigners (seed
  ``SHA-256("skylight test witness key")`` and others, timestamp 1767139200) whose output is
  committed under ``cmd/skylight/testdata/witness*/``; Ed25519 is deterministic, so signing
  must reproduce those lines byte for byte.

No published ML-DSA-44 cosignature vector was found (C2SP, sunlight, torchwood,
transparency-dev); the ML-DSA-44 message is checked byte for byte against the structure in
the spec, built here field by field, and signatures round-trip through ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import stat
import struct
from pathlib import Path

import pytest

from gateway.audit import cosignature, note, sigtypes
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.keystore import KeyStoreError

SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNATURE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)

SKYLIGHT_TIME = 1767139200
SKYLIGHT_TEXT = "rome2026h1.example.org\n300\nlCkHUpkmVBEms2r2T1K6Og69+wUuuN3MIEW1/ezu2v0=\n"
SKYLIGHT_LOG_LINE = (
    "— rome2026h1.example.org kVB1JgAAAZtxtEwABAMARzBFAiEAi+mTa2xjL1IdWpH82OeciGsGvwRAP+f1WkfKaSZ"
    "CfFECIHoNPZ/Q3y6UNzvKOO9cuLr6V16vPNfhwhle9f6r5H/Z\n"
)
# (name, seed string, vkey in witness*.v0.json, checkpoint text, cosignature line)
SKYLIGHT_COSIGNERS = [
    (
        "witness.example.org",
        "skylight test witness key",
        "witness.example.org+b8a2cf20+BFLN3yikSfFkVAJtrnh/CiY3Zozkoy7clp+P7XB28qUN",
        SKYLIGHT_TEXT,
        "— witness.example.org uKLPIAAAAABpVGeAhm2bOvKc3LaB9PFN1ruG19Y5yqslmcAAbhftnn1Zznmo0LXFZq4L"
        "GvqKqLX8jWlwLKasxEGTLIqAVusneCBmBw==\n",
    ),
    (
        "witness2.example.org",
        "skylight test witness2 key",
        "witness2.example.org+2e55b896+BIZ7fpceQWd60IfqQeS9IAnmNOCZjMDne8lZuguz/bi9",
        "milan2026h1.example.org\n300\nlCkHUpkmVBEms2r2T1K6Og69+wUuuN3MIEW1/ezu2v0=\n",
        "— witness2.example.org LlW4lgAAAABpVGeAN/uFWqfjdU94rrKxFycCggM0Sa1L5tOJCJdYBwJ41CQsgKWA6B0+"
        "vywok3cPI3JIzuPeR+VotuYe/eNy0+30Dw==\n",
    ),
    (
        "mirror.example.org",
        "skylight test mirror key",
        "mirror.example.org+3fb148ef+BAAjjch9GyYz0sJsJx7ALhbdAtz2ov0unbzSl1vMp94O",
        "rome2026h1.example.org\n300\ngw31yQrqZZCcEOPrzX+bpy3nJ6QgngTKn8G1m0i62uU=\n",
        "— mirror.example.org P7FI7wAAAABpVGeAjA1S4pJm6MbcXjX7UUImu4azZtrfcVW2uyr/LXIYlwEJzXC0N0Ei"
        "ZkbqfLdXt/4gVEEuGmxJjAfXKMCISpsJAg==\n",
    ),
]


def _fixed(t: int) -> cosignature.Clock:
    return lambda: float(t)


@pytest.mark.parametrize(
    "name,seed,vkey,text,line", SKYLIGHT_COSIGNERS, ids=[c[0] for c in SKYLIGHT_COSIGNERS]
)
def test_ed25519_cosignatures_reproduce_sunlight_byte_for_byte(
    name: str, seed: str, vkey: str, text: str, line: str
) -> None:
    c = Ed25519Cosigner(name, hashlib.sha256(seed.encode()).digest(), _fixed(SKYLIGHT_TIME))
    assert c.verifier_key == vkey
    assert note.signature_line(c, text) == line
    opened = note.open_note(text + "\n" + line, [vkey])
    assert [(s.name, s.key_id) for s in opened.verified] == [(name, c.key_id)]


def test_sunlight_witness_checkpoint_verifies_with_the_published_vkey() -> None:
    """tlog-witness "Monitor Retrieval": the stored checkpoint carries log and witness lines."""
    name, _, vkey, text, line = SKYLIGHT_COSIGNERS[0]
    served = text + "\n" + SKYLIGHT_LOG_LINE + line
    opened = note.open_note(served, [vkey])
    assert [s.name for s in opened.verified] == [name]
    assert [s.name for s in opened.unverified] == ["rome2026h1.example.org"]  # type 0x05, unknown
    assert hashlib.sha256(b"rome2026h1.example.org").hexdigest().startswith("000de184301123b9")


def test_spec_example_cosignature_is_a_timestamped_signature() -> None:
    """tlog-cosignature "Format": 4-byte key ID, 8-byte big-endian timestamp, 64-byte Ed25519."""
    _, sigs = note.parse_note(SPEC_TEXT + "\n" + SPEC_COSIGNATURE + "\n")
    (sig,) = sigs
    assert sig.name == "witness.example.com/w1"
    assert len(sig.signature) == 8 + 64
    # The spec's "Ed25519 signed message" example uses this very timestamp.
    assert sigtypes.cosignature_timestamp(sig.signature) == 1679315147


def test_ed25519_signed_message_is_the_spec_example() -> None:
    """tlog-cosignature "Ed25519 signed message", the example message, byte for byte."""
    assert sigtypes.cosignature_v1_message(1679315147, SPEC_TEXT) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_mldsa44_signed_message_is_the_spec_structure() -> None:
    """tlog-cosignature "ML-DSA-44 signed message": label, name<1..255>, u64, origin<1..255>, u64 x2, hash."""
    root = bytes(range(32))
    want = (
        b"subtree/v1\n\x00"  # uint8 label[12]
        + b"\x13witness.example.org"  # opaque cosigner_name<1..2^8-1>
        + b"\x00\x00\x00\x00\x64\x18\x50\xcb"  # uint64 timestamp 1679315147
        + b"\x1bexample.com/behind-the-sofa"  # opaque log_origin<1..2^8-1>
        + b"\x00" * 8  # uint64 start
        + b"\x00\x00\x00\x00\x01\x3e\x2d\xc3"  # uint64 end 20852163
        + root
    )
    assert len(b"subtree/v1\n\x00") == 12
    got = sigtypes.subtree_v1_message(
        "witness.example.org", 1679315147, "example.com/behind-the-sofa", 0, 20852163, root
    )
    assert got == want
    for bad in (
        ("", 1, "o", 0, 1, root),
        ("n" * 256, 1, "o", 0, 1, root),
        ("n", 1, "o" * 256, 0, 1, root),
        ("n", 1, "o", 4, 8, root),  # start > 0 needs timestamp 0
        ("n", 1 << 63, "o", 0, 1, root),
        ("n", 1, "o", 0, 1, root[:31]),
    ):
        with pytest.raises(ValueError):
            sigtypes.subtree_v1_message(*bad)  # type: ignore[arg-type]
    assert sigtypes.subtree_v1_message("n", 0, "o", 4, 8, root)[-48:-32] == struct.pack(">QQ", 4, 8)


def test_key_ids_and_vkeys_of_both_cosignature_types() -> None:
    """tlog-cosignature "Format": key ID formulas with 0x04 and 0x06; vkeys with those type bytes."""
    seed = hashlib.sha256(b"gateway test cosigner").digest()
    for cls, type_byte, size in ((Ed25519Cosigner, 0x04, 32), (MLDSA44Cosigner, 0x06, 1312)):
        c = cls("witness.test/w1", seed)
        assert len(c.public_key) == size
        assert (
            c.key_id
            == hashlib.sha256(b"witness.test/w1\n" + bytes([type_byte]) + c.public_key).digest()[:4]
        )
        name, hex_id, key64 = c.verifier_key.split("+", 2)
        assert (name, hex_id) == ("witness.test/w1", c.key_id.hex())
        assert base64.b64decode(key64) == bytes([type_byte]) + c.public_key
        assert note.parse_verifier_key(c.verifier_key) == c.verifier
        assert note.parse_verifier_key(c.verifier_key, types={type_byte}).sig_type == type_byte
        with pytest.raises(note.InvalidKey, match="signature type"):
            note.parse_verifier_key(c.verifier_key, types={sigtypes.SIG_ED25519})
    # One public key, three types: three distinct key IDs (signed-note "Verifier keys").
    ed = note.Signer("k", seed)
    assert len({ed.key_id, Ed25519Cosigner("k", seed).key_id}) == 2


def test_an_mldsa44_vkey_of_the_wrong_length_is_refused() -> None:
    c = MLDSA44Cosigner("w", bytes(32))
    short = c.public_key[:-1]
    kid = sigtypes.key_id("w", 0x06, short)
    key64 = base64.b64encode(bytes([0x06]) + short).decode()
    vkey = f"w+{kid.hex()}+{key64}"
    with pytest.raises(note.InvalidKey, match="length"):
        note.parse_verifier_key(vkey)


@pytest.mark.parametrize("cls", [Ed25519Cosigner, MLDSA44Cosigner])
def test_cosignatures_verify_and_bind_what_they_sign(cls: type[cosignature.Cosigner]) -> None:
    c = cls("witness.test/w1", hashlib.sha256(cls.__name__.encode()).digest(), _fixed(1700000000))
    line = note.signature_line(c, SPEC_TEXT)
    assert note.open_note(SPEC_TEXT + "\n" + line, [c.verifier_key]).text == SPEC_TEXT
    _, (sig,) = note.parse_note(SPEC_TEXT + "\n" + line)
    assert sigtypes.cosignature_timestamp(sig.signature) == 1700000000
    # Another size, another root, another timestamp: each breaks the cosignature.
    for text in (SPEC_TEXT.replace("20852163", "20852164"), SPEC_TEXT.replace("CsU", "DsU")):
        with pytest.raises(note.InvalidSignature):
            note.open_note(text + "\n" + line, [c.verifier_key])
    forged = bytearray(sig.signature)
    forged[7] ^= 1
    assert not c.verifier.verify(SPEC_TEXT.encode(), bytes(forged))


def test_mldsa44_cosignatures_commit_to_the_cosigner_name() -> None:
    """tlog-cosignature: unlike type 0x04, the ML-DSA-44 message includes the cosigner name."""
    c = MLDSA44Cosigner("witness.test/a", bytes(32), _fixed(5))
    sig = c.sign(SPEC_TEXT.encode())
    renamed = note.Verifier("witness.test/b", c.key_id, c.public_key, c.sig_type)
    assert c.verifier.verify(SPEC_TEXT.encode(), sig)
    assert not renamed.verify(SPEC_TEXT.encode(), sig)


def test_cosignature_types_are_domain_separated_from_plain_ed25519() -> None:
    seed = bytes(range(32))
    plain, cosigner = note.Signer("k", seed), Ed25519Cosigner("k", seed, _fixed(1))
    as_cosigner = note.Verifier("k", cosigner.key_id, plain.public_key, sigtypes.SIG_COSIGNATURE_V1)
    raw = plain.sign(SPEC_TEXT.encode())
    assert not as_cosigner.verify(SPEC_TEXT.encode(), struct.pack(">Q", 1) + raw)
    assert not plain.verifier.verify(SPEC_TEXT.encode(), cosigner.sign(SPEC_TEXT.encode())[8:])


def test_extension_lines_are_signed_by_ed25519_and_refused_by_mldsa44() -> None:
    """tlog-cosignature: Ed25519 includes extension lines; ML-DSA-44 does not sign them."""
    text = SPEC_TEXT + "extension one\n"
    ed = Ed25519Cosigner("w", bytes(32), _fixed(9))
    line = note.signature_line(ed, text)
    with pytest.raises(note.InvalidSignature):
        note.open_note(text.replace("one", "two") + "\n" + line, [ed.verifier_key])
    with pytest.raises(note.MalformedCheckpoint, match="extension"):
        MLDSA44Cosigner("w", bytes(32), _fixed(9)).sign(text.encode())


def test_timestamps_beyond_2_63_and_a_zero_clock_are_refused() -> None:
    ed = Ed25519Cosigner("w", bytes(32))
    with pytest.raises(ValueError):
        ed.sign_at(SPEC_TEXT.encode(), 1 << 63)
    too_late = struct.pack(">Q", 1 << 63) + bytes(64)
    assert not ed.verifier.verify(SPEC_TEXT.encode(), too_late)
    with pytest.raises(note.NoteError, match="zero"):
        Ed25519Cosigner("w", bytes(32), _fixed(0)).sign(SPEC_TEXT.encode())


def test_cosigner_key_file(tmp_path: Path) -> None:
    path = tmp_path / "witness.key"
    made = cosignature.create_cosigner_file(path, "witness.test/w1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [c.sig_type for c in made] == [0x06, 0x04]
    loaded = cosignature.load_cosigners(path)
    assert [c.verifier_key for c in loaded] == [c.verifier_key for c in made]
    assert "PRIVATE" not in repr(loaded[0])
    with pytest.raises(FileExistsError):
        cosignature.create_cosigner_file(path, "witness.test/w1")
    path.chmod(0o644)
    with pytest.raises(KeyStoreError):
        cosignature.load_cosigners(path)


def test_cosigner_key_files_that_are_inconsistent_are_refused(tmp_path: Path) -> None:
    a, b = Ed25519Cosigner("a", bytes(32)), MLDSA44Cosigner("b", bytes(32))
    cases = {
        "names": a.private_key() + "\n" + b.private_key() + "\n",
        "twice": a.private_key() + "\n" + a.private_key() + "\n",
        "key id": a.private_key().replace(f"+{a.key_id.hex()}+", "+00000000+"),
        "type": note.Signer("a", bytes(32)).private_key(),
        "empty": "\n",
    }
    for i, (why, text) in enumerate(cases.items()):
        path = tmp_path / f"{i}.key"
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(note.InvalidKey):
            cosignature.load_cosigners(path)
        assert why
