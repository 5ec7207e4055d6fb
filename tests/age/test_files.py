"""Whole files: encrypt/decrypt round trips, iterators, armor, re-headering, refusals."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from gateway import age
from gateway.age import stream
from gateway.age.format import Stanza, write_header
from tests.age.conftest import CHUNK, data, decrypt_bytes, encrypt_bytes

BATCH_BYTES = stream.BATCH * CHUNK
SIZES = [
    0,
    1,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    3 * CHUNK,
    BATCH_BYTES - 1,
    BATCH_BYTES,
    BATCH_BYTES + 1,
    2 * BATCH_BYTES + CHUNK + 7,
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [0, 2])
def test_round_trip_at_chunk_and_batch_boundaries(
    size: int, threads: int, identity: age.X25519Identity
) -> None:
    plaintext = data(size, size)
    ciphertext = encrypt_bytes(plaintext, [identity.to_recipient()], threads=threads)
    header = age.parse_header(ciphertext)
    chunks = max(1, -(-size // CHUNK))
    assert len(ciphertext) == len(header.raw) + 16 + size + 16 * chunks
    assert decrypt_bytes(ciphertext, [identity], threads=2 - threads) == plaintext


def test_ciphertext_is_fresh_each_time(recipient: age.X25519Recipient) -> None:
    assert encrypt_bytes(b"same", [recipient]) != encrypt_bytes(b"same", [recipient])


def test_iterators_round_trip_with_any_chunking(identity: age.X25519Identity) -> None:
    plaintext = data(3 * CHUNK + 5)
    pieces = [plaintext[i : i + 1000] for i in range(0, len(plaintext), 1000)] + [b""]
    out = list(age.encrypt_iter(iter(pieces), [identity.to_recipient()]))
    header = age.parse_header(out[0][:-16])
    assert len(out[0]) == len(header.raw) + 16  # the header and the nonce come first
    ciphertext = b"".join(out)
    assert decrypt_bytes(ciphertext, [identity]) == plaintext
    head = (ciphertext[i : i + 1] for i in range(400))  # the header a byte at a time
    rest = (ciphertext[i : i + 777] for i in range(400, len(ciphertext), 777))
    assert b"".join(age.decrypt_iter(itertools.chain(head, rest), [identity])) == plaintext


def test_encrypt_reads_sources_without_readinto(identity: age.X25519Identity) -> None:
    class OnlyRead:
        def __init__(self, data: bytes) -> None:
            self.f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self.f.read(min(n, 999) if n >= 0 else n)

    plaintext = b"z" * (2 * CHUNK + 3)
    out = io.BytesIO()
    assert age.encrypt(OnlyRead(plaintext), out, [identity.to_recipient()]) == len(plaintext)
    assert decrypt_bytes(out.getvalue(), [identity]) == plaintext
    sink = io.BytesIO()
    age.decrypt(OnlyRead(out.getvalue()), sink, [identity])
    assert sink.getvalue() == plaintext


@pytest.mark.parametrize("size", [0, 1, 47, 48, 49, CHUNK + 1, 48 * 1024 * 3])
def test_armored_round_trip(size: int, identity: age.X25519Identity) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    armored = encrypt_bytes(plaintext, [identity.to_recipient()], armor=True)
    text = armored.decode("ascii")
    lines = text.split("\n")
    assert (
        lines[0] == "-----BEGIN AGE ENCRYPTED FILE-----"
        and lines[-2] == "-----END AGE ENCRYPTED FILE-----"
    )
    assert all(len(line) == 64 for line in lines[1:-3]) and 0 < len(lines[-3]) <= 64
    assert decrypt_bytes(armored, [identity]) == plaintext
    assert decrypt_bytes(b"\n  \r\n" + armored + b"\n\n", [identity]) == plaintext


def test_multiple_recipients_and_kinds() -> None:
    x, pq = age.X25519Identity.generate(), age.HybridIdentity.generate()
    ciphertext = encrypt_bytes(b"both", [x.to_recipient(), pq.to_recipient()])
    assert [s.type for s in age.parse_header(ciphertext).stanzas] == ["X25519", "mlkem768x25519"]
    assert decrypt_bytes(ciphertext, [x]) == b"both"
    assert decrypt_bytes(ciphertext, [pq]) == b"both"
    assert decrypt_bytes(ciphertext, [age.X25519Identity.generate(), pq]) == b"both"


def test_scrypt_round_trip_and_rules(recipient: age.X25519Recipient) -> None:
    ciphertext = encrypt_bytes(b"secret", [age.ScryptRecipient("correct horse", work_factor=10)])
    assert age.parse_header(ciphertext).stanzas[0].args[1] == "10"
    assert decrypt_bytes(ciphertext, [age.ScryptIdentity("correct horse")]) == b"secret"
    with pytest.raises(age.NoIdentityMatchError):
        decrypt_bytes(ciphertext, [age.ScryptIdentity("wrong")])
    with pytest.raises(age.HeaderError, match="above the limit"):
        decrypt_bytes(ciphertext, [age.ScryptIdentity("correct horse", max_work_factor=9)])
    with pytest.raises(age.UsageError, match="only recipient"):
        encrypt_bytes(b"x", [age.ScryptRecipient("pw", work_factor=10), recipient])
    mixed = write_header(
        [*age.ScryptRecipient("pw", work_factor=10).wrap(bytes(16)), Stanza("x", (), b"")],
        bytes(16),
    )
    for ids in ([age.ScryptIdentity("pw")], [age.X25519Identity.generate()]):
        with pytest.raises(age.HeaderError, match="only stanza"):
            age.unwrap_file_key(age.parse_header(mixed), ids)


def test_no_match_and_mac_failure(identity: age.X25519Identity) -> None:
    ciphertext = encrypt_bytes(b"data", [identity.to_recipient()])
    with pytest.raises(age.NoIdentityMatchError):
        decrypt_bytes(ciphertext, [age.X25519Identity.generate()])
    header = age.parse_header(ciphertext)
    extra = Stanza("unknown", ("arg",), b"added")
    forged = write_header([*header.stanzas, extra], bytes(16))  # cannot know the file key
    with pytest.raises(age.MacError):
        age.unwrap_file_key(age.parse_header(forged), [identity])
    with pytest.raises(age.UsageError):
        age.unwrap_file_key(header, [])


def test_reheader_keeps_the_payload(identity: age.X25519Identity) -> None:
    plaintext = data(2 * CHUNK + 11)
    original = encrypt_bytes(plaintext, [identity.to_recipient()])
    header = age.read_header(io.BytesIO(original))
    payload = original[len(header.raw) :]
    for evaluator in (age.X25519Identity.generate(), age.HybridIdentity.generate()):
        new = age.reheader(header, [identity], [evaluator.to_recipient()])
        assert new != header.raw
        reheadered = age.parse_header(new)
        assert reheadered.raw == new and reheadered.mac != header.mac
        assert decrypt_bytes(new + payload, [evaluator]) == plaintext
        with pytest.raises(age.NoIdentityMatchError):
            decrypt_bytes(new + payload, [identity])
    with pytest.raises(age.NoIdentityMatchError):
        age.reheader(header, [age.X25519Identity.generate()], [identity.to_recipient()])


def test_encrypt_needs_a_recipient() -> None:
    with pytest.raises(age.UsageError):
        encrypt_bytes(b"x", [])


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda p: p[:-1], age.PayloadError),  # truncated final chunk
        (lambda p: p[: -(CHUNK + 16 + 5)], age.PayloadError),  # final chunk dropped
        (lambda p: p + b"\x00", age.PayloadError),  # trailing data
        (
            lambda p: (
                p[:16]
                + p[16 + CHUNK + 16 : 16 + 2 * (CHUNK + 16)]
                + p[16 : 16 + CHUNK + 16]
                + p[16 + 2 * (CHUNK + 16) :]
            ),
            age.PayloadError,
        ),  # two chunks swapped
        (lambda p: p[:15], age.HeaderError),  # the nonce is cut
    ],
)
def test_payload_tampering_is_refused(
    mutate: object, error: type, identity: age.X25519Identity
) -> None:
    plaintext = data(2 * CHUNK + 100)
    original = encrypt_bytes(plaintext, [identity.to_recipient()])
    header = age.parse_header(original)
    payload = original[len(header.raw) :]
    out = io.BytesIO()
    with pytest.raises(error):
        age.decrypt(io.BytesIO(header.raw + mutate(payload)), out, [identity])  # type: ignore[operator]
    assert plaintext.startswith(out.getvalue())


def test_text_streams_are_refused_cleanly(identity: age.X25519Identity) -> None:
    with pytest.raises(age.AgeError, match="binary"):
        age.decrypt(io.StringIO("age-encryption.org/v1\n"), io.BytesIO(), [identity])
    with pytest.raises(age.AgeError, match="binary"):
        age.read_header(io.StringIO("age-encryption.org/v1\n"))
    with pytest.raises(age.AgeError, match="binary"):
        age.encrypt(io.StringIO("text"), io.BytesIO(), [identity.to_recipient()])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [0, 2])
def test_regular_files_round_trip_and_are_left_at_their_end(
    size: int, threads: int, tmp_path: Path, identity: age.X25519Identity
) -> None:
    plaintext = data(size, size + 5)
    source, sealed = tmp_path / "plain", tmp_path / "plain.age"
    source.write_bytes(b"skipped" + plaintext)
    with open(source, "rb") as src, open(sealed, "wb") as dst:
        src.read(7)
        assert age.encrypt(src, dst, [identity.to_recipient()], threads=threads) == size
        assert src.read() == b""
    assert decrypt_bytes(sealed.read_bytes(), [identity]) == plaintext
    out = io.BytesIO()
    with open(sealed, "rb", buffering=0) as src:
        assert age.decrypt(src, out, [identity], threads=threads) == size
        assert src.read() == b""
    assert out.getvalue() == plaintext


def test_a_truncated_regular_file_is_refused_with_the_plaintext_before(
    tmp_path: Path, identity: age.X25519Identity
) -> None:
    plaintext = data(3 * BATCH_BYTES, 6)
    ciphertext = encrypt_bytes(plaintext, [identity.to_recipient()])
    path = tmp_path / "cut.age"
    path.write_bytes(ciphertext[: len(ciphertext) - 2 * (CHUNK + 16)])
    out = io.BytesIO()
    with open(path, "rb") as f, pytest.raises(age.PayloadError, match="truncated"):
        age.decrypt(f, out, [identity])
    assert out.getvalue() == plaintext[: len(plaintext) - 2 * CHUNK]
