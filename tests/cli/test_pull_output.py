"""Pull writes only where a person expects: never over a device, a directory or a file by surprise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.conftest import Live, actions

WEIGHTS = os.urandom(300_000)


@pytest.fixture
def granted(live: Live, evaluator_key: Path) -> str:
    artifact = live.push(WEIGHTS, name="model-x")
    live.grant(artifact["id"])
    return str(artifact["id"])


def _pulled(live: Live) -> int:
    return sum(a in ("key.release", "content.download") for a in actions(live.rt))


@pytest.mark.parametrize("raw", [False, True], ids=["decrypted", "raw"])
def test_pull_onto_a_device_or_a_pipe_is_refused_before_any_byte(
    live: Live, granted: str, evaluator_key: Path, tmp_path: Path, raw: bool
) -> None:
    device = tmp_path / "null"
    device.symlink_to("/dev/null")  # a device by name, as -o /dev/null gives it
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for target in (device, pipe):
        args = [
            "pull",
            granted,
            "-o",
            str(target),
            *(["--raw"] if raw else ["-i", str(evaluator_key)]),
        ]
        done = live.gateway("eval", *args, "--force")
        assert done.exit_code == 1
        assert done.stderr.startswith(f"gateway: error: {target} is not a regular file"), (
            done.stderr
        )
    assert device.is_symlink() and Path("/dev/null").is_char_device()
    assert _pulled(live) == 0, "nothing was fetched"


def test_pull_onto_a_directory_is_refused_before_any_byte(
    live: Live, granted: str, evaluator_key: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "outdir"
    folder.mkdir()
    done = live.gateway("eval", "pull", granted, "-o", str(folder), "-i", str(evaluator_key))
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        f"gateway: error: {folder} is a directory",
        f"gateway: hint: give the file to write in it, e.g. -o {folder / 'NAME'}",
    ]
    assert list(tmp_path.glob("outdir*")) == [folder] and not any(folder.iterdir())
    assert _pulled(live) == 0


def test_pulling_onto_an_existing_file_needs_force_and_replaces_it_only_when_verified(
    live: Live, granted: str, evaluator_key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.bin"
    out.write_bytes(b"my own file")
    args = ["pull", granted, "-o", str(out), "-i", str(evaluator_key)]
    done = live.gateway("eval", *args)
    assert done.exit_code == 1 and done.stderr.splitlines() == [
        f"gateway: error: {out} exists",
        "gateway: hint: pass --force to replace it once the new file is verified",
    ]
    assert out.read_bytes() == b"my own file" and _pulled(live) == 0
    forced = live.gateway("eval", *args, "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == WEIGHTS and not (tmp_path / "model.bin.part").exists()


def test_a_pull_refused_when_the_grant_ends_deletes_its_partial_plaintext(
    live: Live, evaluator_key: Path, tmp_path: Path
) -> None:
    artifact = live.push(WEIGHTS, name="model-y")
    grant = live.grant(artifact["id"])
    out = tmp_path / "model.bin"
    partial = tmp_path / "model.bin.part"
    partial.write_bytes(WEIGHTS[:100_000])  # what an earlier, interrupted pull left
    live.call("lab", "DELETE", f"/v1/grants/{grant['id']}")
    done = live.gateway("eval", "pull", artifact["id"], "-o", str(out), "-i", str(evaluator_key))
    assert done.exit_code == 1
    assert _said(done.stderr)[0].endswith(f"; {partial} was deleted"), done.stderr
    assert not partial.exists() and not out.exists()


def test_a_pull_that_cannot_fit_is_refused_before_any_byte(
    live: Live, granted: str, evaluator_key: Path, small_disk: Path
) -> None:
    out = small_disk / "model.bin"
    done = live.gateway("eval", "pull", granted, "-o", str(out), "-i", str(evaluator_key))
    assert done.exit_code == 1
    assert _said(done.stderr)[0].startswith(f"gateway: error: {small_disk} has "), done.stderr
    assert "and model.bin needs 293.0 KiB more" in done.stderr
    assert list(small_disk.iterdir()) == [] and _pulled(live) == 0


def _said(stderr: str) -> list[str]:
    """The lines of ``stderr`` but the note of a first use (the lab's key pinned here)."""
    return [line for line in stderr.splitlines() if not line.startswith("gateway: note: ")]
