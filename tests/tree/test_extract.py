"""Extraction of the gateway's own archives: verified file by file, resumable, never partial."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.tree.commit import FileEntry
from gateway.tree.errors import CommitmentMismatch, ExtractError, ResumeError
from gateway.tree.extract import ArchiveCheck, extract, restart_offset
from gateway.tree.names import RESERVED
from gateway.tree.plan import plan_tree
from gateway.tree.tarfmt import Layout
from tests.tree.conftest import Spec, archive, archive_hasher, commit, snapshot, write_tree

MODEL: Spec = {
    "config.json": b'{"layers": 2}',
    "model-00001-of-00002.safetensors": os.urandom(300_000),
    "model-00002-of-00002.safetensors": os.urandom(200_001),
    "tokenizer/tokenizer.json": b"{}" * 1000,
    "tokenizer/vocab.txt": b"",
    "scripts/run.sh": (b"#!/bin/sh\n", 0o755),
    "empty": None,
}


class Cut(io.RawIOBase):
    """The archive's bytes, then a dropped connection after ``limit`` of them."""

    def __init__(self, data: bytes, limit: int) -> None:
        self.data, self.limit, self.at = data, limit, 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.at >= self.limit:
            raise ConnectionError("the connection dropped")
        n = min(len(buffer), self.limit - self.at)
        buffer[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


def _setup(tmp_path: Path, spec: Spec = MODEL) -> tuple[Path, bytes, list[FileEntry], bytes]:
    src = write_tree(tmp_path / "src", spec)
    data, entries, whole = archive(plan_tree(src))
    return src, data, entries, whole


def _verified_only(dest: Path, src: Path) -> None:
    """Every file at a final name in ``dest`` is the source's; the staging holds no content."""
    want = snapshot(src)
    for rel, entry in snapshot(dest).items():
        if rel.split("/")[0] == RESERVED:
            assert rel in (RESERVED, f"{RESERVED}/journal"), rel
            continue
        assert want[rel] == entry, rel


def test_round_trip_restores_the_tree_and_its_modes(tmp_path: Path) -> None:
    src, data, entries, whole = _setup(tmp_path)
    dest = tmp_path / "out"
    done = extract(
        io.BytesIO(data), dest, entries, commit, archive=ArchiveCheck(whole, archive_hasher())
    )
    assert snapshot(dest) == snapshot(src)
    assert (done.files, done.directories, done.resumed_at) == (6, 3, 0)
    assert done.archive_commitment == whole
    assert not (dest / RESERVED).exists()


@pytest.mark.parametrize("cut_at", ["boundaries", "chunks"])
def test_interrupted_extraction_resumes_without_rewriting_verified_files(
    tmp_path: Path, cut_at: str
) -> None:
    src, data, entries, whole = _setup(tmp_path)
    layout = Layout(plan_tree(src).members)
    cuts = layout.boundaries() if cut_at == "boundaries" else range(1, len(data), 65536 + 77)
    for n, cut in enumerate(cuts):
        dest = tmp_path / f"out{n}"
        with pytest.raises(ConnectionError):
            extract(Cut(data, cut), dest, entries, commit)
        _verified_only(dest, src)
        inodes = {p: p.stat().st_ino for p in dest.rglob("*") if p.is_file()}
        restart = restart_offset(dest)
        assert restart <= cut and restart in layout.boundaries() + [0]
        chunk_start = restart // 65536 * 65536  # a decrypting pull restarts at a chunk
        done = extract(
            io.BytesIO(data[chunk_start:]),
            dest,
            entries,
            commit,
            src_offset=chunk_start,
            archive=ArchiveCheck(whole, archive_hasher()),
        )
        assert done.resumed_at == restart
        assert snapshot(dest) == snapshot(src)
        for path, inode in inodes.items():
            if RESERVED not in str(path):
                assert path.stat().st_ino == inode, path


def test_a_tampered_file_is_named_and_nothing_unverified_is_left(tmp_path: Path) -> None:
    src, data, entries, _ = _setup(tmp_path)
    plan = plan_tree(src)
    shard = next(m for m in plan.members if m.path.startswith("model-00002"))
    at = Layout(plan.members).placed(plan.members.index(shard)).data_offset + 1000
    forged = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    dest = tmp_path / "out"
    with pytest.raises(CommitmentMismatch, match="model-00002-of-00002.safetensors"):
        extract(io.BytesIO(forged), dest, entries, commit)
    assert not (dest / shard.path).exists()
    assert (dest / "model-00001-of-00002.safetensors").exists()
    assert sorted(p.name for p in (dest / RESERVED).iterdir()) == ["journal"]
    _verified_only(dest, src)


def test_changed_modes_or_directories_fail_the_archive_commitment(tmp_path: Path) -> None:
    src, data, entries, whole = _setup(tmp_path)
    (src / "scripts/run.sh").chmod(0o644)
    (src / "empty").rmdir()
    other, _, _ = archive(plan_tree(src))
    with pytest.raises(CommitmentMismatch, match="archive commitment"):
        extract(
            io.BytesIO(other),
            tmp_path / "out",
            entries,
            commit,
            archive=ArchiveCheck(whole, archive_hasher()),
        )


def test_a_file_missing_from_the_archive_is_named(tmp_path: Path) -> None:
    src, data, entries, _ = _setup(tmp_path)
    extra = FileEntry("weights/extra.bin", 1, b"\0" * 32)
    with pytest.raises(ExtractError, match="extra.bin.*not in the archive"):
        extract(io.BytesIO(data), tmp_path / "out", [*entries, extra], commit)


def test_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    _, data, entries, _ = _setup(tmp_path)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine").write_bytes(b"keep")
    with pytest.raises(ExtractError, match="not empty"):
        extract(io.BytesIO(data), dest, entries, commit)
    assert (dest / "mine").read_bytes() == b"keep"
    assert sorted(os.listdir(dest)) == ["mine"]


def test_resume_refuses_another_manifest_and_a_changed_verified_file(tmp_path: Path) -> None:
    src, data, entries, _ = _setup(tmp_path)
    dest = tmp_path / "out"
    with pytest.raises(ConnectionError):
        extract(Cut(data, len(data) - 2000), dest, entries, commit)
    other = [FileEntry(e.path, e.size, bytes(32)) for e in entries]
    with pytest.raises(ResumeError, match="another artifact"):
        extract(io.BytesIO(data), dest, other, commit)
    (dest / "config.json").write_bytes(b'{"layers": 3}')
    with pytest.raises(ResumeError, match="config.json"):
        extract(io.BytesIO(data), dest, entries, commit)


def test_resume_refuses_a_stream_that_starts_too_late(tmp_path: Path) -> None:
    _, data, entries, _ = _setup(tmp_path)
    dest = tmp_path / "out"
    with pytest.raises(ConnectionError):
        extract(Cut(data, 5000), dest, entries, commit)
    late = restart_offset(dest) + 512
    with pytest.raises(ResumeError, match="starts at"):
        extract(io.BytesIO(data[late:]), dest, entries, commit, src_offset=late)


def test_a_staging_directory_without_a_journal_starts_afresh(tmp_path: Path) -> None:
    src, data, entries, _ = _setup(tmp_path)
    dest = tmp_path / "out"
    (dest / RESERVED).mkdir(parents=True)
    (dest / RESERVED / "current").write_bytes(b"half a file")
    assert extract(io.BytesIO(data), dest, entries, commit).resumed_at == 0
    assert snapshot(dest) == snapshot(src)


def test_filesystem_failures_are_extract_errors_naming_the_path(tmp_path: Path) -> None:
    _, data, entries, _ = _setup(tmp_path)
    with pytest.raises(ExtractError, match="No such file or directory"):
        extract(io.BytesIO(data), tmp_path / "missing" / "out", entries, commit)


def test_a_full_disk_names_the_file_and_leaves_it_unnamed(tmp_path: Path) -> None:
    """A real write failure: the file-size limit (EFBIG) stands in for a full disk."""
    _, data, entries, _ = _setup(tmp_path)
    (tmp_path / "archive.tar").write_bytes(data)
    code = f"""
import io, resource, signal, sys, json
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from tests.tree.conftest import commit
from gateway.tree.commit import FileEntry
from gateway.tree.errors import ExtractError
from gateway.tree.extract import extract
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (250_000, 250_000))
entries = [FileEntry(p, s, bytes.fromhex(c)) for p, s, c in json.loads(sys.argv[1])]
try:
    extract(open(sys.argv[2], "rb"), sys.argv[3], entries, commit)
except ExtractError as exc:
    print(exc.path, exc.detail)
"""
    listed = json.dumps([[e.path, e.size, e.commitment.hex()] for e in entries])
    dest = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", code, listed, str(tmp_path / "archive.tar"), str(dest)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("model-00001-of-00002.safetensors 'model-00001-of-00002")
    assert "File too large" in done.stdout
    assert not (dest / "model-00001-of-00002.safetensors").exists()
    assert not (dest / RESERVED / "current").exists()


def _drop_last_journal_line(dest: Path) -> None:
    journal = dest / RESERVED / "journal"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[:-2]) + b"\n")


def test_a_file_named_but_not_yet_recorded_is_adopted_on_resume(tmp_path: Path) -> None:
    """A run killed between linking a verified file and recording it in the journal."""
    src, data, entries, _ = _setup(tmp_path)
    layout = Layout(plan_tree(src).members)
    dest = tmp_path / "out"
    with pytest.raises(ConnectionError):
        extract(Cut(data, layout.boundaries()[4]), dest, entries, commit)
    _drop_last_journal_line(dest)
    extract(io.BytesIO(data), dest, entries, commit)
    assert snapshot(dest) == snapshot(src)


def test_an_unrecorded_file_that_differs_is_not_adopted(tmp_path: Path) -> None:
    src, data, entries, _ = _setup(tmp_path)
    layout = Layout(plan_tree(src).members)
    dest = tmp_path / "out"
    with pytest.raises(ConnectionError):
        extract(Cut(data, layout.boundaries()[4]), dest, entries, commit)
    _drop_last_journal_line(dest)
    last = plan_tree(src).members[3].path
    (dest / last).write_bytes(b"\0" * (dest / last).stat().st_size)
    with pytest.raises(ExtractError, match="already exists"):
        extract(io.BytesIO(data), dest, entries, commit)
    assert (dest / last).read_bytes() == b"\0" * (dest / last).stat().st_size


def test_a_sink_fed_by_writes_extracts_and_resumes(tmp_path: Path) -> None:
    from gateway.tree.sink import ExtractSink
    from gateway.tree.transfer import resume_chunk

    src, data, entries, whole = _setup(tmp_path)
    dest = tmp_path / "out"
    sink = ExtractSink(dest, entries, commit)
    buf = bytearray(70_000)  # reused at once by the writer, as a decryptor's ring is
    for at in range(0, len(data) // 2, len(buf)):
        piece = data[at : at + len(buf)]
        buf[: len(piece)] = piece
        sink.write(memoryview(buf)[: len(piece)])
        buf[:] = bytes(len(buf))
    sink.abort()
    _verified_only(dest, src)
    start = resume_chunk(dest)
    sink = ExtractSink(
        dest, entries, commit, start_chunk=start, archive=ArchiveCheck(whole, archive_hasher())
    )
    sink.write(data[start * 65536 :])
    assert sink.close().resumed_at >= start * 65536
    assert snapshot(dest) == snapshot(src)


def test_a_sink_raises_the_extractors_error_to_its_writer(tmp_path: Path) -> None:
    from gateway.tree.sink import ExtractSink

    _, data, entries, _ = _setup(tmp_path)
    sink = ExtractSink(tmp_path / "out", entries[1:], commit, depth=1)
    with pytest.raises(ExtractError, match="not in the signed manifest"):
        for at in range(0, len(data), 4096):
            sink.write(data[at : at + 4096])
        sink.close()
