"""A sharded safetensors model through the whole machinery: tar, age, extraction, OMS.

The model is written with the ``safetensors`` package: three shards, the index that
maps each tensor to its shard, a config and tokenizer files in a subfolder, signed with
OpenSSF Model Signing. It is archived and encrypted with ``gateway.age`` as a push
does, then restored two ways: decrypted and extracted here (verified file by file),
and by the standard tools (``age -d | tar -x``). Both must be ``diff -r`` identical to
the original, load the same tensors and pass the OMS check. A push resumed at a chunk
must produce the very ciphertext the whole push did from there, and an extraction
interrupted mid-shard must resume from the chunk :func:`resume_chunk` names.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import age
from gateway.age import stream
from gateway.age.stream import CHUNK
from gateway.tree.commit import archive_commitment, file_entries
from gateway.tree.extract import ArchiveCheck
from gateway.tree.oms import PublicKey, sign_directory, verify_directory
from gateway.tree.plan import plan_tree
from gateway.tree.transfer import (
    age_file_from,
    archive_size,
    extract_payload,
    resume_chunk,
    seal_tree,
)
from tests.tools import require_tool
from tests.tree.conftest import archive_hasher, commit

safetensors_numpy = pytest.importorskip("safetensors.numpy")
SHARDS = 3


def write_model(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    tensors: dict[str, np.ndarray] = {}
    weight_map: dict[str, str] = {}
    root.mkdir()
    for shard in range(1, SHARDS + 1):
        name = f"model-{shard:05d}-of-{SHARDS:05d}.safetensors"
        part = {
            f"layers.{shard}.attn.weight": rng.standard_normal((256, 384), dtype=np.float32),
            f"layers.{shard}.mlp.weight": rng.standard_normal((384, 300 + shard), dtype=np.float32),
            f"layers.{shard}.norm": rng.standard_normal((384,), dtype=np.float32).astype(
                np.float16
            ),
        }
        safetensors_numpy.save_file(part, str(root / name), metadata={"format": "np"})
        tensors.update(part)
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.nbytes for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 384}))
    (root / "generation_config.json").write_text("{}")
    (root / "tokenizer").mkdir()
    (root / "tokenizer/tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}))
    (root / "tokenizer/tokenizer_config.json").write_text('{"bos_token": "<s>"}')
    (root / "tokenizer/special_tokens_map.json").write_text("{}")
    return tensors


def load_model(root: Path) -> dict[str, np.ndarray]:
    index = json.loads((root / "model.safetensors.index.json").read_text())
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(safetensors_numpy.load_file(str(root / shard)))
    return out


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PublicKey]:
    base = tmp_path_factory.mktemp("model")
    key = ec.generate_private_key(ec.SECP256R1())
    (base / "oms.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    write_model(base / "model")
    sign_directory(base / "model", base / "oms.pem")
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base / "model", PublicKey(pub)


def _diff(a: Path, b: Path) -> None:
    subprocess.run(["diff", "-r", str(a), str(b)], check=True)


def _encrypt(model: Path, out: Path, identity: age.X25519Identity) -> tuple[list, bytes, bytes]:
    """Seal the model's archive into an age file as a push does; files list, key, header."""
    plan = plan_tree(model)
    file_key, nonce = os.urandom(16), os.urandom(16)
    header = age.wrap_file_key(file_key, [identity.to_recipient()])
    src, pieces = seal_tree(plan, stream.payload_key(file_key, nonce), commit=commit)
    with open(out, "wb") as fh, src:
        fh.write(header + nonce)
        for piece in pieces:
            fh.write(piece)
    assert out.stat().st_size == len(header) + stream.payload_size(archive_size(plan))
    whole = archive_commitment(plan.members, src.commitments, archive_hasher())
    return file_entries(plan.members, src.commitments), whole, file_key


def _unseal(path: Path, file_key: bytes, start_chunk: int = 0) -> Iterator[memoryview]:
    with open(path, "rb") as fh:
        header = age.read_header(fh)
        nonce = fh.read(16)
        fh.seek(len(header.raw) + stream.sealed_offset(start_chunk))
        aead = stream.payload_key(file_key, nonce)
        yield from stream.unseal(fh, aead, start_chunk=start_chunk)


def test_sharded_model_round_trips_through_age_and_verifies(
    tmp_path: Path, signed_model: tuple[Path, PublicKey]
) -> None:
    model, oms_key = signed_model
    identity = age.X25519Identity.generate()
    entries, whole, file_key = _encrypt(model, tmp_path / "model.age", identity)
    assert {e.path for e in entries} >= {"model.sig", "tokenizer/tokenizer.json"}
    out = tmp_path / "restored"
    done = extract_payload(
        _unseal(tmp_path / "model.age", file_key),
        out,
        entries,
        commit,
        archive=ArchiveCheck(whole, archive_hasher()),
    )
    assert done.files == len(entries) == SHARDS + 7
    _diff(model, out)
    restored, original = load_model(out), load_model(model)
    assert restored.keys() == original.keys()
    assert all(np.array_equal(restored[k], original[k]) for k in original)
    assert "model-00002-of-00003.safetensors" in verify_directory(out, oms_key).covered


@pytest.mark.interop
def test_the_standard_tools_restore_the_same_directory(
    tmp_path: Path, signed_model: tuple[Path, PublicKey]
) -> None:
    age_bin, tar_bin = require_tool("age"), require_tool("tar")
    model, oms_key = signed_model
    identity = age.X25519Identity.generate()
    (tmp_path / "key.txt").write_text(f"{identity}\n")
    _encrypt(model, tmp_path / "model.age", identity)
    out = tmp_path / "by-tools"
    out.mkdir()
    decrypt = subprocess.Popen(
        [age_bin, "-d", "-i", str(tmp_path / "key.txt"), str(tmp_path / "model.age")],
        stdout=subprocess.PIPE,
    )
    subprocess.run([tar_bin, "-x", "-C", str(out)], stdin=decrypt.stdout, check=True)
    assert decrypt.wait() == 0
    _diff(model, out)
    verify_directory(out, oms_key)


def test_a_resumed_push_seals_exactly_the_rest(
    tmp_path: Path, signed_model: tuple[Path, PublicKey]
) -> None:
    model, _ = signed_model
    plan = plan_tree(model)
    aead = stream.payload_key(b"k" * 16, b"n" * 16)
    full_src, full = seal_tree(plan, aead, commit=commit)
    with full_src:
        whole = b"".join(bytes(p) for p in full)
    chunks = stream.chunk_count(archive_size(plan))
    for start in (1, chunks // 2, chunks - 1):
        src, rest = seal_tree(plan, aead, start_chunk=start, commit=commit)
        with src:
            tail = b"".join(bytes(p) for p in rest)
        assert tail == whole[start * stream.SEALED :], start
        for path, digest in src.commitments.items():
            assert full_src.commitments[path] == digest


def test_an_interrupted_pull_resumes_from_the_chunk_it_names(
    tmp_path: Path, signed_model: tuple[Path, PublicKey]
) -> None:
    model, oms_key = signed_model
    identity = age.X25519Identity.generate()
    entries, whole, file_key = _encrypt(model, tmp_path / "model.age", identity)
    out = tmp_path / "restored"

    def dropped(limit: int) -> Iterator[memoryview]:
        seen = 0
        for piece in _unseal(tmp_path / "model.age", file_key):
            if seen + len(piece) > limit:
                raise ConnectionError("the download dropped")
            seen += len(piece)
            yield piece

    cut = archive_size(plan_tree(model)) * 2 // 3
    with pytest.raises(ConnectionError):
        extract_payload(dropped(cut), out, entries, commit)
    start = resume_chunk(out)
    assert 0 < start * CHUNK <= cut
    done = extract_payload(
        _unseal(tmp_path / "model.age", file_key, start),
        out,
        entries,
        commit,
        start_chunk=start,
        archive=ArchiveCheck(whole, archive_hasher()),
    )
    assert done.resumed_at >= start * CHUNK
    _diff(model, out)
    verify_directory(out, oms_key)


def test_the_age_file_from_any_byte_is_the_whole_files_tail(
    tmp_path: Path, signed_model: tuple[Path, PublicKey]
) -> None:
    model, _ = signed_model
    plan = plan_tree(model)
    identity = age.X25519Identity.generate()
    file_key, nonce = b"f" * 16, b"n" * 16
    prefix = age.wrap_file_key(file_key, [identity.to_recipient()]) + nonce
    aead = stream.payload_key(file_key, nonce)
    src, pieces = age_file_from(plan, aead, prefix, 0)
    with src:
        whole = b"".join(bytes(p) for p in pieces)
    assert len(whole) == len(prefix) - 16 + stream.payload_size(archive_size(plan))
    part = 1 << 20  # parts of 1 MiB: where a resumed push starts
    for offset in (
        1,
        len(prefix),
        len(prefix) + 1,
        part,
        2 * part,
        len(whole) - 17,
        len(whole) - 1,
    ):
        src, pieces = age_file_from(plan, aead, prefix, offset, commit=commit)
        with src:
            assert b"".join(bytes(p) for p in pieces) == whole[offset:], offset
