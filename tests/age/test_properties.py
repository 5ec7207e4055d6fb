"""Properties: round trips at random sizes near chunk boundaries; every mutation refused."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import age
from tests.age.conftest import CHUNK, data, decrypt_bytes, encrypt_bytes

IDENTITY = age.X25519Identity.generate()
RECIPIENT = IDENTITY.to_recipient()
PLAINTEXT = data(2 * CHUNK + 300, 7)
CIPHERTEXT = encrypt_bytes(PLAINTEXT, [RECIPIENT])
HEADER_LEN = len(age.parse_header(CIPHERTEXT).raw)

near_boundary = st.builds(lambda k, d: max(0, k * CHUNK + d), st.integers(0, 4), st.integers(-3, 3))


@settings(max_examples=25, deadline=None)
@given(
    size=st.one_of(near_boundary, st.integers(0, 5 * CHUNK)),
    seed=st.integers(0, 2**16),
    armor=st.booleans(),
    threads=st.sampled_from([0, 1, 2]),
)
def test_round_trip(size: int, seed: int, armor: bool, threads: int) -> None:
    plaintext = data(size, seed)
    ciphertext = encrypt_bytes(plaintext, [RECIPIENT], armor=armor, threads=threads)
    assert decrypt_bytes(ciphertext, [IDENTITY]) == plaintext


@settings(max_examples=25, deadline=None)
@given(size=near_boundary, piece=st.integers(512, 3 * CHUNK))
def test_iterators_round_trip(size: int, piece: int) -> None:
    plaintext = data(size, size)
    pieces = (plaintext[i : i + piece] for i in range(0, len(plaintext), piece))
    ciphertext = b"".join(age.encrypt_iter(pieces, [RECIPIENT]))
    cpieces = [ciphertext[i : i + piece] for i in range(0, len(ciphertext), piece)]
    assert b"".join(age.decrypt_iter(cpieces, [IDENTITY])) == plaintext


def _refused(mutated: bytes) -> None:
    """Decryption raises one of the module's errors, having released only true plaintext."""
    out = io.BytesIO()
    try:
        age.decrypt(io.BytesIO(mutated), out, [IDENTITY])
    except age.AgeError:
        assert PLAINTEXT.startswith(out.getvalue())
        return
    raise AssertionError("a mutated file decrypted")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(CIPHERTEXT) - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    mutated = bytearray(CIPHERTEXT)
    mutated[position] ^= 1 << bit
    _refused(bytes(mutated))


@settings(max_examples=40, deadline=None)
@given(position=st.integers(0, HEADER_LEN + 64), bit=st.integers(0, 7))
def test_flipped_bits_in_the_header_are_refused(position: int, bit: int) -> None:
    mutated = bytearray(CIPHERTEXT)
    mutated[position] ^= 1 << bit
    _refused(bytes(mutated))


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, len(CIPHERTEXT) - 1))
def test_any_truncation_is_refused(cut: int) -> None:
    _refused(CIPHERTEXT[:cut])


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, len(CIPHERTEXT)), junk=st.binary(min_size=1, max_size=40))
def test_any_insertion_is_refused(position: int, junk: bytes) -> None:
    _refused(CIPHERTEXT[:position] + junk + CIPHERTEXT[position:])


@settings(max_examples=30, deadline=None)
@given(start=st.integers(0, len(CIPHERTEXT) - 1), length=st.integers(1, 2 * CHUNK))
def test_any_deletion_is_refused(start: int, length: int) -> None:
    _refused(CIPHERTEXT[:start] + CIPHERTEXT[start + length :])


@settings(max_examples=60, deadline=None)
@given(
    junk=st.binary(max_size=600),
    prefix=st.sampled_from(
        [b"", b"age-encryption.org/v1\n-> X25519 ", b"-----BEGIN AGE ENCRYPTED FILE-----\n"]
    ),
)
def test_hostile_input_only_raises_module_errors(junk: bytes, prefix: bytes) -> None:
    try:
        age.decrypt(io.BytesIO(prefix + junk), io.BytesIO(), [IDENTITY, age.ScryptIdentity("pw")])
    except age.AgeError:
        return
    raise AssertionError("random input decrypted")
