"""Hostile archives, made by hand as a malicious lab or a compromised gateway would.

Each must be refused with the member named where it has one, with nothing written
outside ``DIR`` (the directory beside it, holding a victim file and the targets of
links, is compared before and after) and no unverified file left at a final name.
"""

from __future__ import annotations

import io
import os
import tarfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.tree.commit import FileEntry
from gateway.tree.errors import ExtractError
from gateway.tree.extract import extract
from gateway.tree.names import RESERVED
from tests.tree.conftest import commit, snapshot

Member = tuple[str, bytes | None] | tarfile.TarInfo  # a file, a directory (None), or raw


def _entries(files: dict[str, bytes]) -> list[FileEntry]:
    out = []
    for path, data in files.items():
        h = commit(path)
        h.update(data)
        out.append(FileEntry(path, len(data), h.digest()))
    return out


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info, b""


def _dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return _special(name, tarfile.DIRTYPE, mode=0o755)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"precious")
    return outside


def _refused(
    tmp_path: Path,
    data: bytes,
    files: dict[str, bytes],
    match: str,
    src: Callable[[bytes], io.RawIOBase] | None = None,
) -> Path:
    dest = tmp_path / "dest"
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("dest")}
    reader = src(data) if src else io.BytesIO(data)
    with pytest.raises(ExtractError, match=match):
        extract(reader, dest, _entries(files), commit)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("dest")}
    assert after == before, "something outside DIR changed"
    signed = {e.path: e.commitment for e in _entries(files)}
    for rel, (kind, _, _) in snapshot(dest).items():
        if kind == "file" and not rel.startswith(RESERVED):  # only verified files have names
            assert _entries({rel: (dest / rel).read_bytes()})[0].commitment == signed[rel], rel
    assert not (dest / RESERVED / "current").exists()
    return dest


OUT = "../outside/target.txt"
EVIL = b"overwritten"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (OUT, "'..'"),
        ("a/../../outside/target.txt", "'..'"),
        ("/tmp/evil-absolute", "absolute"),
        ("evil\x1b[2J", "control character"),
        ("back\\slash", "backslash"),
        (f"{RESERVED}/current", "reserved"),
    ],
)
def test_bad_names(tmp_path: Path, victim: Path, name: str, match: str) -> None:
    data = _tar([_dir("a"), _file(name, EVIL)])
    _refused(tmp_path, data, {name: EVIL}, match)
    assert (victim / "target.txt").read_bytes() == b"precious"


def test_symlink_then_a_path_through_it(tmp_path: Path, victim: Path) -> None:
    data = _tar(
        [
            _special("link", tarfile.SYMTYPE, linkname=str(victim)),
            _file("link/target.txt", EVIL),
        ]
    )
    dest = _refused(tmp_path, data, {"link/target.txt": EVIL}, "'link': a symbolic link")
    assert not (dest / "link").exists() and not (dest / "link").is_symlink()


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_special("hard", tarfile.LNKTYPE, linkname=str(Path("/etc/passwd"))), "hard link"),
        (_special("chr", tarfile.CHRTYPE, devmajor=1, devminor=3), "character device"),
        (_special("blk", tarfile.BLKTYPE, devmajor=7, devminor=0), "block device"),
        (_special("fifo", tarfile.FIFOTYPE), "FIFO"),
        (_special("cont", tarfile.CONTTYPE), "contiguous"),
    ],
)
def test_links_devices_and_fifos(
    tmp_path: Path, victim: Path, member: tuple[tarfile.TarInfo, bytes], match: str
) -> None:
    _refused(tmp_path, _tar([_file("ok", b"1"), member]), {"ok": b"1"}, match)


def test_a_hard_link_to_an_earlier_member(tmp_path: Path, victim: Path) -> None:
    members = [_file("a", b"1"), _special("b", tarfile.LNKTYPE, linkname="a")]
    _refused(tmp_path, _tar(members), {"a": b"1", "b": b"1"}, "'b': a hard link")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["a", "a"], "appears twice"),
        (["README.md", "readme.md"], "differ only by case"),
        (["café", unicodedata.normalize("NFD", "café")], "normalisation"),
    ],
)
def test_duplicates_and_clashes(tmp_path: Path, victim: Path, names: list[str], match: str) -> None:
    data = _tar([_file(n, b"x") for n in names])
    _refused(tmp_path, data, dict.fromkeys(names, b"x"), match)


def test_a_second_copy_of_a_file_cannot_replace_the_first(tmp_path: Path, victim: Path) -> None:
    data = _tar([_file("a", b"good"), _file("a", b"evil")])
    dest = _refused(tmp_path, data, {"a": b"good"}, "appears twice")
    assert (dest / "a").read_bytes() == b"good"


def test_a_directory_twice(tmp_path: Path, victim: Path) -> None:
    _refused(tmp_path, _tar([_dir("d"), _dir("d")]), {}, "'d': appears twice")


def test_a_path_through_a_file(tmp_path: Path, victim: Path) -> None:
    data = _tar([_file("f", b"1"), _file("f/x", b"2")])
    _refused(tmp_path, data, {"f": b"1", "f/x": b"2"}, "'f' is a file")


def test_a_path_under_an_undeclared_directory(tmp_path: Path, victim: Path) -> None:
    data = _tar([_file("nodir/x", b"2")])
    _refused(tmp_path, data, {"nodir/x": b"2"}, "not an earlier directory")


def test_a_file_larger_than_its_manifest_entry(tmp_path: Path, victim: Path) -> None:
    data = _tar([_file("w.bin", b"x" * 5000)])
    dest = tmp_path / "dest"
    with pytest.raises(ExtractError, match="5000 bytes in the archive, 10 in the signed"):
        extract(io.BytesIO(data), dest, [FileEntry("w.bin", 10, b"\0" * 32)], commit)
    assert not (dest / "w.bin").exists() and not (dest / RESERVED / "current").exists()


def test_a_file_absent_from_the_manifest(tmp_path: Path, victim: Path) -> None:
    data = _tar([_file("a", b"1"), _file("smuggled.py", b"import os")])
    _refused(tmp_path, data, {"a": b"1"}, "'smuggled.py': not in the signed manifest")


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"linkpath": "/etc/passwd"}, "linkpath"),
        ({"hdrcharset": "BINARY"}, "hdrcharset"),
        ({"GNU.sparse.map": "0,10"}, "GNU.sparse.map"),
    ],
)
def test_pax_records_outside_the_profile(
    tmp_path: Path, victim: Path, headers: dict[str, str], match: str
) -> None:
    info, data = _file("a", b"1")
    info.pax_headers = headers
    _refused(tmp_path, _tar([(info, data)]), {"a": b"1"}, match)


def test_a_global_pax_header(tmp_path: Path, victim: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"x": "y"}
    ) as tf:
        tf.addfile(*_file("a", b"1")[:1], io.BytesIO(b"1"))
    _refused(tmp_path, buf.getvalue(), {"a": b"1"}, "global pax header")


def test_a_gnu_long_name(tmp_path: Path, victim: Path) -> None:
    name = "x" * 150
    data = _tar([_file(name, b"1")], fmt=tarfile.GNU_FORMAT)
    _refused(tmp_path, data, {name: b"1"}, "not a POSIX ustar")


def _blocks(data: bytes) -> bytearray:
    return bytearray(data)


def _fix_checksum(block: bytearray, at: int = 0) -> None:
    block[at + 148 : at + 156] = b" " * 8
    block[at + 148 : at + 156] = b"%06o\x00 " % sum(block[at : at + 512])


def test_framing_faults(tmp_path: Path, victim: Path) -> None:
    good = _tar([_file("a", b"1" * 10)], fmt=tarfile.USTAR_FORMAT)
    body = good[: 512 + 512]  # the header and the padded data, without the end blocks
    cases: list[tuple[bytes, str]] = [
        (body + bytes(1024) + b"junk", "data after the end"),
        (body + bytes(512) + b"\x01" + bytes(511), "lone zero block"),
        (body, "ends early"),
        (good[:600], "ends early"),
        (body[:522] + b"\x01" + body[523:] + bytes(1024), "padding"),
    ]
    bad_sum = _blocks(good)
    bad_sum[0] = ord("b")
    cases.append((bytes(bad_sum), "checksum"))
    base256 = _blocks(good)
    base256[124:136] = b"\x80" + bytes(10) + b"\x0a"
    _fix_checksum(base256)
    cases.append((bytes(base256), "base-256"))
    not_ustar = _blocks(good)
    not_ustar[257:265] = b"ustar  \x00"
    _fix_checksum(not_ustar)
    cases.append((bytes(not_ustar), "not a POSIX ustar"))
    for n, (data, match) in enumerate(cases):
        root = tmp_path / f"case{n}"
        root.mkdir()
        _refused(root, data, {"a": b"1" * 10}, match)


def test_a_directory_swapped_for_a_symlink_while_extracting(tmp_path: Path, victim: Path) -> None:
    """A concurrent process in DIR replaces a directory just made with a link outside."""
    data = _tar([_dir("d"), _file("d/target.txt", EVIL)])
    dest = tmp_path / "dest"

    class Racing(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner, self.swapped = io.BytesIO(data), False

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.inner.tell() >= 512 and not self.swapped:
                os.rename(dest / "d", dest / "d.moved")
                os.symlink(victim, dest / "d")
                self.swapped = True
            return self.inner.readinto(buffer)

    _refused(tmp_path, data, {"d/target.txt": EVIL}, "'d': cannot be opened safely", Racing)
    assert (victim / "target.txt").read_bytes() == b"precious"


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


@pytest.mark.parametrize(
    "size", ["\u00b2", "\u0661", "1" * 20, "5" * 4301, "+1", " 1", "1_0", "-0", ""]
)
def test_a_pax_size_that_is_not_ascii_digits_is_refused_naming_the_member(
    tmp_path: Path, victim: Path, size: str
) -> None:
    """``str.isdigit`` takes "²" and Arabic-Indic digits, and ``int`` of over 4300 digits
    raises: each is the extractor's refusal naming the member, never a ValueError."""
    records = _pax_record("path", "weights.bin") + _pax_record("size", size)
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    head = pax.tobuf(format=tarfile.USTAR_FORMAT) + records + bytes(-len(records) % 512)
    member = _file("weights.bin", b"1")[0].tobuf(format=tarfile.USTAR_FORMAT)
    data = head + member + b"1" + bytes(511) + bytes(1024)
    _refused(tmp_path, data, {"weights.bin": b"1"}, "'weights.bin': a pax size that is not")
