"""Manifest v2: commitments keyed by the age file key, their shape, and v1 beside them."""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway import manifest as mf

FILE_KEY = bytes(range(16))
GUESS = b"hunter2-api-key"


def _v2(**plain: Any) -> dict[str, Any]:
    return {
        "version": 2,
        "upload": "up_123",
        "name": "token",
        "kind": "credential",
        "ciphertext": {"size": 1000, "part_size": 8 << 20, "parts_sha256": "ab" * 32},
        "plaintext": plain or {"size": 800, "commitment": "cd" * 32},
    }


def _commit(hasher: mf.Hasher, data: bytes) -> str:
    hasher.update(data)
    return hasher.hexdigest()


def test_the_key_is_hkdf_sha256_of_the_file_key_with_the_documented_info() -> None:
    # RFC 5869 with an empty salt: HMAC's zero padding makes it HashLen zero octets.
    for info in (mf.INFO_PLAINTEXT, mf.INFO_FILE, mf.INFO_ARCHIVE):
        zeros = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=info)
        assert mf.derive_key(FILE_KEY, info) == zeros.derive(FILE_KEY)
    keys = {mf.derive_key(FILE_KEY, i) for i in (mf.INFO_PLAINTEXT, mf.INFO_FILE, mf.INFO_ARCHIVE)}
    assert len(keys) == 3
    with pytest.raises(mf.ManifestError):
        mf.derive_key(bytes(15), mf.INFO_PLAINTEXT)


def test_the_plaintext_commitment_is_hmac_sha256_under_the_derived_key() -> None:
    key = mf.derive_key(FILE_KEY, b"gateway manifest v2 plaintext")
    expected = hmac.new(key, GUESS, hashlib.sha256).hexdigest()
    assert _commit(mf.plaintext_hasher(FILE_KEY), GUESS) == expected


def test_a_reader_without_the_key_cannot_confirm_a_guessed_plaintext() -> None:
    committed = _commit(mf.plaintext_hasher(FILE_KEY), GUESS)
    # The right guess under any other key, or unkeyed, tells nothing.
    for wrong in (os.urandom(16), bytes(16), FILE_KEY[::-1]):
        assert _commit(mf.plaintext_hasher(wrong), GUESS) != committed
    assert hashlib.sha256(GUESS).hexdigest() != committed
    assert hmac.new(b"", GUESS, hashlib.sha256).hexdigest() != committed
    # Only the right key confirms the right guess, and refuses a wrong one.
    assert _commit(mf.plaintext_hasher(FILE_KEY), GUESS) == committed
    assert _commit(mf.plaintext_hasher(FILE_KEY), GUESS + b"x") != committed


def test_the_per_file_commitment_binds_the_length_prefixed_path() -> None:
    commit = mf.file_commit(FILE_KEY)
    key = mf.derive_key(FILE_KEY, mf.INFO_FILE)
    name = "shards/modèle-00001.safetensors".encode()
    message = len(name).to_bytes(8, "big") + name + b"content"
    assert (
        _commit(commit(name.decode()), b"content") == hmac.new(key, message, "sha256").hexdigest()
    )
    # Moving bytes between the name and the content changes the commitment.
    assert _commit(commit("ab"), b"c") != _commit(commit("a"), b"bc")
    assert _commit(commit("a"), b"x") != _commit(mf.file_commit(os.urandom(16))("a"), b"x")
    with pytest.raises(mf.ManifestError):
        commit("\udcff")


def test_the_archive_hasher_is_its_own_key() -> None:
    archive = _commit(mf.archive_hasher(FILE_KEY), b"transcript")
    assert archive != _commit(mf.plaintext_hasher(FILE_KEY), b"transcript")
    key = mf.derive_key(FILE_KEY, mf.INFO_ARCHIVE)
    assert archive == hmac.new(key, b"transcript", "sha256").hexdigest()


def test_check_plaintext_v2_and_v1() -> None:
    committed = _commit(mf.plaintext_hasher(FILE_KEY), GUESS)
    v2 = _v2(size=len(GUESS), commitment=committed)
    hasher = mf.plaintext_digest(v2)(FILE_KEY)
    mf.check_plaintext(v2, len(GUESS), _commit(hasher, GUESS))
    with pytest.raises(mf.ManifestError, match="keyed commitment"):
        mf.check_plaintext(v2, len(GUESS), _commit(mf.plaintext_hasher(bytes(16)), GUESS))
    with pytest.raises(mf.ManifestError, match="bytes"):
        mf.check_plaintext(v2, len(GUESS) + 1, v2["plaintext"]["commitment"])
    v1 = {
        "version": 1,
        "plaintext": {"size": len(GUESS), "sha256": hashlib.sha256(GUESS).hexdigest()},
    }
    mf.check_plaintext(v1, len(GUESS), _commit(mf.plaintext_digest(v1)(FILE_KEY), GUESS))
    with pytest.raises(mf.ManifestError, match="SHA-256"):
        mf.check_plaintext(v1, len(GUESS), hashlib.sha256(b"other").hexdigest())


def test_v2_validates_and_signs() -> None:
    m = _v2()
    assert mf.validate_manifest(m) == m
    key = mf.generate_signing_key()
    mf.verify_manifest(m, mf.sign(m, key), mf.public_key_b64(key))


def test_a_directory_shape_validates() -> None:
    files = [
        {"path": "config.json", "size": 10, "commitment": "01" * 32},
        {"path": "shards/a.safetensors", "size": 700, "commitment": "02" * 32},
    ]
    m = _v2(size=800, archive="03" * 32, files=files)
    assert mf.validate_manifest(m) == m
    with pytest.raises(mf.ManifestError, match="file by file"):
        mf.plaintext_digest(m)


def _files(*entries: dict[str, Any]) -> dict[str, Any]:
    return _v2(size=800, archive="03" * 32, files=list(entries))


ENTRY = {"path": "a", "size": 1, "commitment": "01" * 32}


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (_v2(size=800, commitment="CD" * 32), "plaintext.commitment"),
        (_v2(size=800), "plaintext.commitment"),
        (_v2(size=800, commitment="cd" * 32, sha256="cd" * 32), "plaintext.sha256"),
        (_v2(size=-1, commitment="cd" * 32), "plaintext.size"),
        (_v2(size=800, files=[ENTRY]), "plaintext.archive"),
        (_files(), "plaintext.files"),
        (_v2(size=800, archive="03" * 32, files={}), "plaintext.files"),
        (_files(ENTRY, ENTRY), "plaintext.files[1].path"),
        (_files({**ENTRY, "path": "a\0b"}), "plaintext.files[0].path"),
        (_files({**ENTRY, "path": ""}), "plaintext.files[0].path"),
        (_files({**ENTRY, "size": 801}), "plaintext.files"),
        (_files({**ENTRY, "commitment": "1"}), "plaintext.files[0].commitment"),
        (_files({**ENTRY, "mode": 0o644}), "plaintext.files[0].mode"),
        (_files("a"), "plaintext.files[0]"),
    ],
)
def test_invalid_v2_manifests_name_the_field(manifest: dict[str, Any], field: str) -> None:
    with pytest.raises(mf.ManifestError) as err:
        mf.validate_manifest(copy.deepcopy(manifest))
    assert str(err.value).startswith(field + ":") or str(err.value).startswith(field + " "), err


def test_a_v1_manifest_built_the_old_way_still_verifies() -> None:
    plaintext = b"weights" * 100
    v1 = {
        "version": 1,
        "upload": "up_1",
        "name": "w",
        "kind": "weights",
        "ciphertext": {"size": 2000, "part_size": 8 << 20, "parts_sha256": "ab" * 32},
        "plaintext": {"size": len(plaintext), "sha256": hashlib.sha256(plaintext).hexdigest()},
    }
    key = mf.generate_signing_key()
    assert mf.validate_manifest(v1) == v1
    mf.verify_manifest(v1, mf.sign(v1, key), mf.public_key_b64(key))
    digest = mf.plaintext_digest(v1)(FILE_KEY)
    digest.update(plaintext)
    mf.check_plaintext(v1, len(plaintext), digest.hexdigest())
