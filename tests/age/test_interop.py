"""Interoperability with the real `age` program (Debian age 1.1.1 or later).

Our files decrypt with ``age -d``; ``age -e`` output decrypts with ours; a re-headered
file decrypts with ``age -d``; each at the chunk-boundary sizes and a few MiB, binary
and armored. Without `age` on PATH these tests skip, or fail in CI (:mod:`tests.tools`).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from gateway import age
from gateway.age.armor import ArmorReader, ArmorWriter
from tests.age.conftest import CHUNK, data, decrypt_bytes, encrypt_bytes
from tests.tools import require_tool

pytestmark = pytest.mark.interop

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * (1 << 20) + 3]


@pytest.fixture(scope="module")
def age_bin() -> str:
    return require_tool("age")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[age.X25519Identity, Path]:
    identity = age.X25519Identity.generate()
    path = tmp_path_factory.mktemp("keys") / "identity.txt"
    path.write_text(f"# test key\n{identity}\n")
    return identity, path


def _age(age_bin: str, *args: str, stdin: bytes) -> bytes:
    done = subprocess.run([age_bin, *args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _dearmor(armored: bytes) -> bytes:
    return ArmorReader(io.BytesIO(armored)).read()


def _armor(binary: bytes) -> bytes:
    out = io.BytesIO()
    writer = ArmorWriter(out)
    writer.write(binary)
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_ours(
    size: int, armor: bool, age_bin: str, keys: tuple[age.X25519Identity, Path]
) -> None:
    identity, path = keys
    plaintext = data(size, size)
    ciphertext = encrypt_bytes(plaintext, [identity.to_recipient()], armor=armor)
    assert _age(age_bin, "-d", "-i", str(path), stdin=ciphertext) == plaintext


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_age(
    size: int, armor: bool, age_bin: str, keys: tuple[age.X25519Identity, Path]
) -> None:
    identity, _ = keys
    plaintext = data(size, size + 1)
    flags = ["-a"] if armor else []
    ciphertext = _age(age_bin, "-e", "-r", str(identity.to_recipient()), *flags, stdin=plaintext)
    assert ciphertext.startswith(
        b"-----BEGIN AGE ENCRYPTED FILE-----" if armor else b"age-encryption.org/v1\n"
    )
    assert decrypt_bytes(ciphertext, [identity]) == plaintext


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_a_reheadered_age_file(
    size: int, armor: bool, age_bin: str, keys: tuple[age.X25519Identity, Path], tmp_path: Path
) -> None:
    custody, _ = keys
    evaluator = age.X25519Identity.generate()
    evaluator_file = tmp_path / "evaluator.txt"
    evaluator_file.write_text(f"{evaluator}\n")
    plaintext = data(size, size + 2)
    flags = ["-a"] if armor else []
    stored = _age(age_bin, "-e", "-r", str(custody.to_recipient()), *flags, stdin=plaintext)
    binary = _dearmor(stored) if armor else stored
    header = age.read_header(io.BytesIO(binary))
    released = (
        age.reheader(header, [custody], [evaluator.to_recipient()]) + binary[len(header.raw) :]
    )
    delivered = _armor(released) if armor else released
    assert _age(age_bin, "-d", "-i", str(evaluator_file), stdin=delivered) == plaintext


@pytest.mark.parametrize("size", [0, CHUNK, 5 * (1 << 20) + 3])
def test_files_by_position_interoperate(
    size: int, age_bin: str, keys: tuple[age.X25519Identity, Path], tmp_path: Path
) -> None:
    """The regular-file fast path, both ways: our file for `age -d`, `age -e`'s file for us."""
    identity, path = keys
    plaintext = data(size, size + 3)
    plain, ours, theirs = tmp_path / "plain", tmp_path / "ours.age", tmp_path / "theirs.age"
    plain.write_bytes(plaintext)
    with open(plain, "rb") as src, open(ours, "wb") as dst:
        age.encrypt(src, dst, [identity.to_recipient()])
    assert _age(age_bin, "-d", "-i", str(path), ours.as_posix(), stdin=b"") == plaintext
    done = subprocess.run(
        [age_bin, "-e", "-r", str(identity.to_recipient()), "-o", str(theirs), str(plain)],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = io.BytesIO()
    with open(theirs, "rb") as src:
        assert age.decrypt(src, out, [identity]) == size
    assert out.getvalue() == plaintext
