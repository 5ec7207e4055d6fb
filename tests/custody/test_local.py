"""The ``local`` backend: key files on this machine, and the values of today's master key."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from gateway import age
from gateway.custody import (
    LEGACY_REF,
    CustodyContext,
    CustodySettings,
    CustodyUnavailable,
    KeyDestroyed,
    ReferenceMismatch,
    UnwrapFailed,
    make_custody,
)
from gateway.custody import local as local_module
from gateway.custody.local import LocalCustody
from tests.custody.conftest import new_ctx
from tests.custody.legacy import legacy_wrap, make_master_key


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def local(keys: Path) -> LocalCustody:
    custody = make_custody(CustodySettings(backend="local"), keys_dir=keys)
    assert isinstance(custody, LocalCustody)
    return custody


def key_file(custody: LocalCustody, ctx: CustodyContext) -> Path:
    return custody.key_dir / f"{ctx.upload_id}.key"


def test_each_artifact_gets_a_private_key_file_named_from_its_context(
    local: LocalCustody, keys: Path
) -> None:
    contexts = [new_ctx() for _ in range(3)]
    refs = [local.create(ctx) for ctx in contexts]

    assert local.key_dir == keys / "custody"
    assert stat.S_IMODE(local.key_dir.stat().st_mode) == 0o700
    files = sorted(local.key_dir.iterdir())
    assert files == sorted(key_file(local, ctx) for ctx in contexts)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert refs == [f"local:{ctx.digest().hex()}" for ctx in contexts]
    assert all(key_file(local, c).read_bytes()[32:] == c.canonical() for c in contexts)


def test_destroy_overwrites_the_key_before_unlinking_it(
    local: LocalCustody, tmp_path: Path
) -> None:
    ctx = new_ctx()
    ref = local.create(ctx)
    blob = local.wrap(ctx, ref, b"AGE-SECRET-KEY-1...")
    other_name = tmp_path / "keys" / "second-name"  # a hard link sees the same blocks
    os.link(key_file(local, ctx), other_name)
    assert other_name.read_bytes()[:32] != bytes(32)

    local.destroy(ctx, ref)

    assert not key_file(local, ctx).exists() and os.listdir(local.key_dir) == []
    assert other_name.read_bytes() == bytes(len(other_name.read_bytes()))
    with pytest.raises(KeyDestroyed):
        local.unwrap(ctx, ref, blob)


def test_values_of_the_master_key_still_unwrap_under_the_legacy_reference(
    local: LocalCustody, keys: Path
) -> None:
    master = make_master_key(keys / "master.key")
    identity = str(age.X25519Identity.generate()).encode()
    ctx = new_ctx()
    old = legacy_wrap(master, identity, ctx.upload_id)

    assert local.unwrap(ctx, LEGACY_REF, old) == identity
    with pytest.raises(UnwrapFailed):  # bound to its upload id, as before
        local.unwrap(new_ctx(), LEGACY_REF, old)
    with pytest.raises(ValueError, match="nothing new"):
        local.wrap(ctx, LEGACY_REF, identity)
    assert local.destroy(ctx, LEGACY_REF) is False  # deleting the value is the whole shred


def test_a_missing_master_key_makes_old_values_unavailable_not_destroyed(
    local: LocalCustody,
) -> None:
    with pytest.raises(CustodyUnavailable, match="master key"):
        local.unwrap(new_ctx(), LEGACY_REF, b"\x01" + bytes(40))


def test_key_files_or_directories_open_to_others_are_refused(local: LocalCustody) -> None:
    ctx = new_ctx()
    ref = local.create(ctx)
    blob = local.wrap(ctx, ref, b"secret")
    key_file(local, ctx).chmod(0o640)
    with pytest.raises(CustodyUnavailable, match="chmod 600"):
        local.unwrap(ctx, ref, blob)

    local.key_dir.chmod(0o755)
    with pytest.raises(CustodyUnavailable, match="chmod 700"):
        local.check()


def test_a_reference_cannot_name_a_file_outside_the_key_directory(local: LocalCustody) -> None:
    ctx = new_ctx()
    local.create(ctx)
    blob = b"\x02" + len(ctx.canonical()).to_bytes(2, "big") + ctx.canonical() + bytes(40)
    for ref in ("local:../master", "local:" + "a" * 31, "local:" + "A" * 32):
        with pytest.raises(ReferenceMismatch):
            local.unwrap(ctx, ref, blob)  # type: ignore[arg-type]


def test_a_legacy_reference_on_an_upload_with_a_key_file_is_an_alarm(local: LocalCustody) -> None:
    ctx = new_ctx()
    ref = local.create(ctx)
    blob = local.wrap(ctx, ref, b"AGE-SECRET-KEY-1...")
    with pytest.raises(ReferenceMismatch):
        local.unwrap(ctx, LEGACY_REF, b"\x01" + bytes(40))
    with pytest.raises(ReferenceMismatch, match="destroyed all the same"):
        local.destroy(ctx, LEGACY_REF)
    with pytest.raises(KeyDestroyed):
        local.unwrap(ctx, ref, blob)


def test_a_crash_in_the_middle_of_destroy_leaves_it_destroyed_and_finishable(
    local: LocalCustody, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between hiding the key and wiping it: unwrap says destroyed, destroy finishes."""
    ctx = new_ctx()
    ref = local.create(ctx)
    blob = local.wrap(ctx, ref, b"AGE-SECRET-KEY-1...")

    def crash(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(local_module, "_overwrite", crash)  # the fault a power cut would be
    with pytest.raises(CustodyUnavailable):
        local.destroy(ctx, ref)
    monkeypatch.undo()

    with pytest.raises(KeyDestroyed):
        local.unwrap(ctx, ref, blob)
    with pytest.raises(ValueError, match="already had"):
        local.create(ctx)  # no second key while the first is not wiped
    assert len(os.listdir(local.key_dir)) == 1  # the tombstone, still holding the key bytes
    assert local.destroy(ctx, ref) is True
    assert os.listdir(local.key_dir) == []
    assert local.destroy(ctx, ref) is False


def test_a_key_directory_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    custody = LocalCustody(tmp_path / "not-a-dir" / "custody", tmp_path / "master.key")
    with pytest.raises(CustodyUnavailable, match="key directory"):
        custody.create(new_ctx())
    with pytest.raises(CustodyUnavailable, match="key directory"):
        custody.check()
