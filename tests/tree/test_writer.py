"""The tar stream: byte-identical for the same tree, readable by GNU tar and tarfile, seekable.

Random trees (hypothesis) cover names (ASCII, non-ASCII, long enough for the ustar
prefix and for pax), sizes (0 and the 512-byte block boundaries) and depth; every one
must extract with GNU tar and with Python's tarfile to the tree itself, and a stream
started at any member boundary or random offset must be exactly the whole stream's tail,
with the same commitments for every file it covers.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.tree.errors import FileChanged
from gateway.tree.names import fold_key
from gateway.tree.plan import plan_tree
from gateway.tree.tarfmt import BLOCK, Layout, member_header
from gateway.tree.tarread import TarReader
from gateway.tree.writer import TarStream
from tests.tools import require_tool
from tests.tree.conftest import Spec, archive, commit, snapshot, write_tree

ALPHABET = "abcXYZ019-_.é中ü"
SIZES = st.one_of(st.sampled_from([0, 1, 511, 512, 513, 1023, 1024, 1025]), st.integers(0, 70_000))


@st.composite
def trees(draw: st.DrawFn) -> Spec:
    names = st.text(ALPHABET, min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
    long_names = st.builds(lambda n, k: (n * 40)[:k], names, st.integers(90, 160)).filter(
        lambda n: len(n.encode()) <= 255
    )
    spec: dict[str, bytes | None | tuple[bytes, int]] = {}
    folded: set[str] = set()
    dirs = [""]
    for _ in range(draw(st.integers(1, 14))):
        parent = draw(st.sampled_from(dirs))
        name = draw(st.one_of(names, long_names))
        path = f"{parent}/{name}" if parent else name
        if fold_key(path) in folded or len(path.encode()) > 600:
            continue
        folded.add(fold_key(path))
        if draw(st.booleans()) and path.count("/") < 5:
            spec[path] = None
            dirs.append(path)
        else:
            size = draw(SIZES)
            data = random.Random(size).randbytes(size)
            spec[path] = (data, draw(st.sampled_from([0o644, 0o755])))
    return spec


def _check_tree(root: Path, gnu: str, scratch: Path) -> None:
    plan = plan_tree(root)
    data, entries, _ = archive(plan)
    assert len(data) == Layout(plan.members).size
    assert {e.path for e in entries} == {m.path for m in plan.files()}
    expected = snapshot(root)
    by_gnu, by_tarfile = scratch / "gnu", scratch / "tarfile"
    by_gnu.mkdir()
    subprocess.run([gnu, "-xf", "-", "-C", str(by_gnu)], input=data, check=True)
    assert snapshot(by_gnu) == expected
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        tf.extractall(by_tarfile, filter="data")
    assert snapshot(by_tarfile) == expected
    whole = {e.path: e.commitment for e in entries}
    rng = random.Random(len(data))
    starts = Layout(plan.members).boundaries() + [rng.randrange(len(data)) for _ in range(12)]
    starts += range(0, len(data), 65536)  # where a resumed push starts: chunk boundaries
    for start in [*starts, len(data) - 1, len(data)]:
        with TarStream(plan, start=start, commit=commit) as stream:
            assert stream.read() == data[start:], start
        for path, digest in stream.commitments.items():
            assert whole[path] == digest, (start, path)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=trees())
def test_random_trees_extract_identically_and_seek_exactly(spec: Spec) -> None:
    gnu = require_tool("tar")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tree(Path(tmp) / "model", spec)
        _check_tree(root, gnu, Path(tmp))


def _digest_in_subprocess(root: Path) -> str:
    code = (
        "import hashlib,sys\n"
        "from gateway.tree.plan import plan_tree\n"
        "from gateway.tree.writer import TarStream\n"
        "print(hashlib.sha256(TarStream(plan_tree(sys.argv[1])).read()).hexdigest())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_same_tree_same_bytes_across_processes_and_creation_order(tmp_path: Path) -> None:
    spec: Spec = {
        "config.json": b"{}",
        "tok/tokenizer.json": b"[1,2]",
        "w/" + "x" * 150: b"long",
        "é.bin": bytes(513),
        "run.sh": (b"#!/bin/sh\n", 0o755),
        "empty": None,
    }
    one = write_tree(tmp_path / "one", spec)
    two = tmp_path / "two"
    for rel in reversed(sorted(spec)):  # made in the other order, at other times
        write_tree(two, {rel: spec[rel]})
        os.utime(two / rel, ns=(12345, 67890))
    first = hashlib.sha256(archive(plan_tree(one))[0]).hexdigest()
    assert _digest_in_subprocess(one) == first
    assert _digest_in_subprocess(one) == first
    assert hashlib.sha256(archive(plan_tree(two))[0]).hexdigest() == first


def test_headers_carry_no_owner_time_or_mode_noise(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": (b"1", 0o777), "d": None})
    os.chown(root / "a", 1234, 4321) if os.geteuid() == 0 else None
    data, _, _ = archive(plan_tree(root))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        infos = tf.getmembers()
    assert [(i.name, i.mode, i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos] == [
        ("a", 0o755, 0, 0, "", "", 0),
        ("d", 0o755, 0, 0, "", "", 0),
    ]
    assert data[-1024:] == bytes(1024) and len(data) == 3 * BLOCK + 1024


def test_pax_only_where_needed(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path / "m", {"plain": b"", "p" * 99 + "/" + "q" * 90: b"", "é": b"", "z" * 101: b""}
    )
    plan = plan_tree(root)
    sizes = {m.path: len(member_header(m)) for m in plan.members}
    assert sizes["plain"] == BLOCK
    assert sizes["p" * 99] == BLOCK  # a directory: with its slash, 100 bytes
    assert sizes["p" * 99 + "/" + "q" * 90] == BLOCK  # fits ustar's prefix + name
    assert sizes["é"] == 3 * BLOCK  # pax: not ASCII
    assert sizes["z" * 101] == 3 * BLOCK  # pax: no '/' to split at


@pytest.mark.parametrize(("size", "pax"), [(8 * 2**30 - 1, False), (8 * 2**30, True)])
def test_sizes_around_8_gib_in_sparse_files(tmp_path: Path, size: int, pax: bool) -> None:
    root = tmp_path / "m"
    root.mkdir()
    with open(root / "huge.bin", "wb") as fh:
        fh.truncate(size)
    (root / "after.txt").write_bytes(b"tail")
    plan = plan_tree(root)
    layout = Layout(plan.members)
    huge = layout.placed(1)
    assert huge.data_offset - huge.header_offset == (3 * BLOCK if pax else BLOCK)
    # Start just before the huge file's end: nothing before it is read, and the tail parses.
    start = huge.data_offset + size - 700
    with TarStream(plan, start=start) as stream:
        tail = stream.read()
    assert tail[:700] == bytes(700) and len(tail) == layout.size - start
    head = TarStream(plan).read(huge.data_offset)
    with tarfile.open(fileobj=io.BytesIO(head + bytes(BLOCK)), mode="r|") as tf:
        infos = [tf.next(), tf.next()]
    assert [(i.name, i.size) for i in infos if i is not None] == [
        ("after.txt", 4),
        ("huge.bin", size),
    ]
    reader = TarReader(io.BytesIO(head))
    first = reader.next()
    assert first is not None and (first.path, first.size) == ("after.txt", 4)
    reader.read_data(memoryview(bytearray(4)))
    second = reader.next()
    assert second is not None and (second.path, second.size) == ("huge.bin", size)


def test_gnu_tar_lists_a_sparse_file_of_8_gib(tmp_path: Path) -> None:
    """GNU tar reads the pax size of an 8 GiB member and finds the next one after it.

    The archive is written as a sparse file: the stream's bytes before the data and
    from just before its end (started there, as a resumed push would), a hole between,
    which holds what the stream would have put there (the source file is a hole too).
    GNU tar seeks over the data of a regular file, so nothing reads 8 GiB.
    """
    gnu = require_tool("tar")
    root = tmp_path / "m"
    root.mkdir()
    with open(root / "huge.bin", "wb") as fh:
        fh.truncate(8 * 2**30 + 3)
    (root / "next.txt").write_bytes(b"after")
    plan = plan_tree(root)
    layout = Layout(plan.members)
    huge = layout.placed(0)
    tail_at = huge.data_offset + huge.size - 100
    with open(tmp_path / "a.tar", "wb") as out:
        out.write(TarStream(plan).read(huge.data_offset))
        out.seek(tail_at)
        with TarStream(plan, start=tail_at) as tail:
            out.write(tail.read())
    assert (tmp_path / "a.tar").stat().st_size == layout.size
    done = subprocess.run(
        [gnu, "-tvf", str(tmp_path / "a.tar")], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and " 8589934595 " in lines[0] and lines[0].endswith("huge.bin")
    assert lines[1].endswith("next.txt") and " 5 " in lines[1]


def test_a_file_changed_after_planning_is_refused_by_name(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": b"1" * 1000, "b": b"2" * 1000})
    plan = plan_tree(root)
    (root / "b").write_bytes(b"3" * 1000)
    os.utime(root / "b", ns=(1, 1))
    with TarStream(plan) as stream, pytest.raises(FileChanged, match="'b'"):
        stream.read()
    (root / "b").unlink()
    (root / "b").write_bytes(b"2" * 1000)  # same content and size, another inode
    with TarStream(plan) as stream, pytest.raises(FileChanged, match="'b'"):
        stream.read()


def test_a_file_that_shrinks_while_read_is_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": b"1" * 100_000})
    plan = plan_tree(root)
    with TarStream(plan) as stream:
        stream.read(BLOCK + 10)
        os.truncate(root / "a", 50)
        with pytest.raises(FileChanged, match="'a'"):
            stream.read()


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_hashing_behind_the_reader_gives_the_same_commitments(tmp_path: Path, threads: int) -> None:
    from gateway.age import stream as age_stream

    spec: Spec = {f"d{i % 3}/f{i}": random.Random(i).randbytes(i * 7919) for i in range(40)}
    spec["big.bin"] = random.Random(0).randbytes(3 << 20)
    plan = plan_tree(write_tree(tmp_path / "m", spec))
    data, entries, _ = archive(plan)
    seen: list[str] = []
    src = TarStream(plan, commit=commit, hash_behind=True, on_file=lambda p, d: seen.append(p))
    aead = age_stream.payload_key(b"k" * 16, b"n" * 16)
    with src:
        sealed = b"".join(bytes(p) for p in age_stream.seal(src, aead, threads))
    assert src.commitments == {e.path: e.commitment for e in entries}
    assert seen == [e.path for e in entries]
    opened = b"".join(bytes(p) for p in age_stream.unseal(io.BytesIO(sealed), aead))
    assert opened == data


def test_hashing_behind_overlaps_the_next_read_and_keeps_every_commitment(tmp_path: Path) -> None:
    """Read through two buffers in turn, as the sealer does, each refilled while the helper
    may still hash the other: the commitments equal those made without the helper."""
    rng = random.Random(7)
    spec: Spec = {f"shard-{i}": rng.randbytes(300_000 + i) for i in range(4)}
    root = write_tree(tmp_path / "model", spec)
    plan = plan_tree(root)
    data, entries, _ = archive(plan)
    buffers = [bytearray(4096), bytearray(4096)]
    got, turn = bytearray(), 0
    with TarStream(plan, commit=commit, hash_behind=True) as stream:
        while n := stream.readinto(buffers[turn]):
            got += buffers[turn][:n]
            turn ^= 1
    assert bytes(got) == data
    assert stream.commitments == {e.path: e.commitment for e in entries}
