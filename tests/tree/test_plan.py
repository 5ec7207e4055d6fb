"""Planning a directory: order, modes, identities, and every kind of entry it refuses."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from gateway.tree.errors import PlanError
from gateway.tree.plan import DIR, FILE, Plan, plan_tree
from tests.tree.conftest import write_tree


def test_members_in_archive_order_with_profile_modes(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path / "m",
        {"b.txt": b"b", "a/x": (b"run", 0o700), "a/y": b"", "a-b": b"1", "empty": None},
    )
    plan = plan_tree(root)
    assert [(m.path, m.kind, m.size, m.mode) for m in plan.members] == [
        ("a", DIR, 0, 0o755),
        ("a/x", FILE, 3, 0o755),
        ("a/y", FILE, 0, 0o644),
        ("a-b", FILE, 1, 0o644),
        ("b.txt", FILE, 1, 0o644),
        ("empty", DIR, 0, 0o755),
    ]
    ident = plan.members[1].identity
    assert ident is not None and ident.inode == (root / "a/x").stat().st_ino
    assert plan.content_size == 5


def test_plan_survives_its_json_and_fingerprints_the_tree_state(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": b"1", "d/b": b"22"})
    plan = plan_tree(root)
    assert Plan.from_json(plan.to_json()) == plan
    assert plan_tree(root).fingerprint() == plan.fingerprint()
    os.utime(root / "d/b", ns=(1, 1))
    assert plan_tree(root).fingerprint() != plan.fingerprint()


def _refused(root: Path, what: str, path: str, **options: bool) -> None:
    with pytest.raises(PlanError, match=what) as err:
        plan_tree(root, **options)
    assert err.value.path == path


def test_refuses_a_symbolic_link_unless_asked_to_follow(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"real": b"data"})
    (root / "link").symlink_to("real")
    _refused(root, "symbolic link", "link")
    followed = plan_tree(root, follow_symlinks=True)
    assert [(m.path, m.size) for m in followed.members] == [("link", 4), ("real", 4)]


def test_following_links_refuses_a_cycle_and_a_dangling_link(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"d/f": b"x"})
    (root / "d/up").symlink_to("..")
    _refused(root, "link back", "d/up", follow_symlinks=True)
    (root / "d/up").unlink()
    (root / "gone").symlink_to("nowhere")
    _refused(root, "to nothing", "gone", follow_symlinks=True)


def test_refuses_hard_links_unless_copies_are_asked_for(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": b"same"})
    os.link(root / "a", root / "b")
    _refused(root, "hard link", "a")
    assert [m.path for m in plan_tree(root, copy_hard_links=True).members] == ["a", "b"]


def test_refuses_fifos_sockets_and_devices(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"ok": b""})
    os.mkfifo(root / "fifo")
    _refused(root, "FIFO", "fifo")
    (root / "fifo").unlink()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        _refused(root, "socket", "sock")
    finally:
        sock.close()
    (root / "sock").unlink()
    try:
        os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs root")
    _refused(root, "device", "null")


def test_refuses_names_that_clash_under_case_or_normalisation(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"Config.json": b"1", "config.json": b"2"})
    _refused(root, "differ only by case", "config.json")
    nfc = write_tree(tmp_path / "n", {"café": b"1", "cafe\u0301": b"2"})
    with pytest.raises(PlanError, match="normalisation"):
        plan_tree(nfc)


def test_refuses_undecodable_and_control_character_names(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {})
    (root / "tab\there").write_bytes(b"")
    _refused(root, "control character", "tab\there")
    (root / "tab\there").unlink()
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "wb"):
        pass
    with pytest.raises(PlanError, match="UTF-8"):
        plan_tree(root)


def test_exclude_leaves_out_a_path_and_everything_under_it(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {".git/objects/x": b"1", "w.bin": b"2"})
    (root / ".git/link").symlink_to("objects")  # never looked at
    assert [m.path for m in plan_tree(root, exclude=[".git"]).members] == ["w.bin"]
    with pytest.raises(PlanError, match="exclude"):
        plan_tree(root, exclude=["../x"])


def test_refuses_what_is_not_a_directory_and_too_many_members(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "m", {"a": b"", "b": b"", "c": b""})
    with pytest.raises(PlanError, match="not a directory"):
        plan_tree(root / "a")
    with pytest.raises(PlanError, match="more than 2"):
        plan_tree(root, max_members=2)
