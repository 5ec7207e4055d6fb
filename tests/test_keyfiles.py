"""Secret files: created private and never overwritten, replaced whole, read only when private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway import keystore
from gateway import manifest as mf
from gateway.client import keys
from gateway.keyfiles import (
    NotARegularFile,
    ReadableByOthers,
    create_secret,
    read_secret,
    replace_secret,
)

ROOT = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _with_file_size_limit(code: str, limit: int) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a process whose writes past ``limit`` bytes fail (EFBIG), as on a full disk."""
    prelude = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True
    )


def test_a_new_secret_is_private_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secret"
    create_secret(path, b"first", parents=True)
    assert path.read_bytes() == b"first" and _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        create_secret(path, b"second")
    assert path.read_bytes() == b"first"
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):  # not even through a dangling symlink
        create_secret(tmp_path / "link", b"x")
    assert not (tmp_path / "elsewhere").exists()


def test_a_failed_write_leaves_no_half_key_behind(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    done = _with_file_size_limit(
        f"from pathlib import Path\nfrom gateway.keyfiles import create_secret\n"
        f"create_secret(Path({str(path)!r}), b'k' * 100)\n",
        limit=10,
    )
    assert done.returncode != 0 and "File too large" in done.stderr
    assert not path.exists()
    create_secret(path, b"k" * 100)  # so the next attempt can succeed
    assert read_secret(path) == b"k" * 100


def test_a_replaced_secret_is_whole_private_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "new" / "profiles.toml"
    replace_secret(path, b"one")
    assert _mode(path.parent) == 0o700
    path.chmod(0o644)
    replace_secret(path, b"two")
    assert path.read_bytes() == b"two" and _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["profiles.toml"]


def test_a_failed_replace_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    replace_secret(path, b"old")
    done = _with_file_size_limit(
        f"from pathlib import Path\nfrom gateway.keyfiles import replace_secret\n"
        f"replace_secret(Path({str(path)!r}), b'n' * 100)\n",
        limit=10,
    )
    assert done.returncode != 0 and "File too large" in done.stderr
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o601, 0o620, 0o602])
def test_a_secret_open_to_anyone_else_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret"
    create_secret(path, b"s")
    path.chmod(mode)
    with pytest.raises(ReadableByOthers) as refused:
        read_secret(path)
    assert refused.value.mode == mode and f"mode {mode:o}" in str(refused.value)
    path.chmod(0o400)
    assert read_secret(path) == b"s"


def test_only_a_regular_file_is_read_and_a_fifo_does_not_block(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFile):
        read_secret(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_secret(fifo)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the thread before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], NotARegularFile)
    with pytest.raises(FileNotFoundError):
        read_secret(tmp_path / "missing")


def test_a_symlink_to_a_private_file_is_followed(tmp_path: Path) -> None:
    create_secret(tmp_path / "real", b"s")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_secret(tmp_path / "link") == b"s"


def test_every_key_file_kind_refuses_to_be_read_by_others(tmp_path: Path) -> None:
    """The server's key store and the lab's signing key say so in their own words."""
    url_key = tmp_path / "url-signing.key"
    keystore.write_secret_file(url_key, bytes(32))
    url_key.chmod(0o644)
    with pytest.raises(keystore.KeyStoreError, match="readable by others; chmod 600"):
        keystore.read_secret_file(url_key)
    with pytest.raises(keystore.KeyStoreError, match="not a regular file"):
        keystore.read_secret_file(tmp_path)
    with pytest.raises(keystore.KeyStoreError, match="not found; run `gateway init`"):
        keystore.read_secret_file(tmp_path / "missing")
    signing = tmp_path / "lab.key"
    keys.write_signing_key(signing)
    assert _mode(signing) == 0o600
    with pytest.raises(keys.PrivateKeyFileError, match="exists; not overwriting a key"):
        keys.write_age_identity(signing)
    signing.chmod(0o660)
    with pytest.raises(mf.SigningKeyFileError, match=r"mode 660\); chmod 600 it"):
        mf.load_signing_key(signing)
    with pytest.raises(keys.PrivateKeyFileError, match="readable by others"):
        keys.load_signer(signing)
