"""Any altered byte of an archive is refused as a TreeError, never another exception.

The archive commitment covers every header byte and the file commitments every data
byte, so with it checked, no change to the stream can pass; and whatever the change,
the extractor must fail in its own terms (no IndexError or UnicodeError from parsing),
leaving no file at a final name that is not the signed one.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tree.errors import TreeError
from gateway.tree.extract import ArchiveCheck, extract
from gateway.tree.names import RESERVED
from gateway.tree.plan import plan_tree
from tests.tree.conftest import archive, archive_hasher, commit, snapshot, write_tree

_TMP = tempfile.TemporaryDirectory()
_SRC = write_tree(
    Path(_TMP.name) / "src",
    {"a.json": b"{}", "d/é" + "x" * 120: b"1" * 700, "d/run": (b"#!", 0o755), "e": None},
)
DATA, ENTRIES, WHOLE = archive(plan_tree(_SRC))
SIGNED = snapshot(_SRC)


def _refused(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "out"
        with pytest.raises(TreeError):
            extract(
                io.BytesIO(data),
                dest,
                ENTRIES,
                commit,
                archive=ArchiveCheck(WHOLE, archive_hasher()),
            )
        for rel, entry in snapshot(dest).items():
            if entry[0] == "file" and not rel.startswith(RESERVED):
                assert SIGNED[rel] == entry, rel


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, len(DATA) - 1), delta=st.integers(1, 255))
def test_any_changed_byte_is_refused(at: int, delta: int) -> None:
    forged = bytearray(DATA)
    forged[at] = (forged[at] + delta) % 256
    _refused(bytes(forged))


@settings(max_examples=60, deadline=None)
@given(length=st.integers(0, len(DATA) - 1))
def test_any_truncation_is_refused(length: int) -> None:
    _refused(DATA[:length])


@settings(max_examples=60, deadline=None)
@given(junk=st.binary(min_size=1, max_size=600))
def test_anything_appended_but_zeros_is_refused(junk: bytes) -> None:
    if not any(junk):
        junk += b"\x01"
    _refused(DATA + junk)
