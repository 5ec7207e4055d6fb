"""Interruptions say what to do: the upload or file, what was kept, the command that resumes.

Real processes: ``gateway serve`` (tests/harness.py) and the ``gateway`` client, stopped
with SIGINT, by killing the server under it, or by a file size limit on its output.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import LocalGateway, cli, gateway_command, write_weights

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIB = 1 << 20


def stopped(err: bytes) -> list[str]:
    """What a stopped pull said, less the first-use note of the lab's key that precedes it."""
    return [
        line
        for line in err.decode().splitlines()
        if not line.startswith("gateway: note: first use of ")
    ]


@pytest.fixture(scope="module")
def gw() -> Iterator[LocalGateway]:
    with LocalGateway(part_mib=5) as running:
        yield running


def _keys(gw: LocalGateway, tmp_path: Path) -> tuple[Path, Path]:
    signing, identity = tmp_path / "lab.key", tmp_path / "eve.agekey"
    cli(gw.env("lab", tmp_path / "lab-home"), "keygen", "--type", "signing", "-o", str(signing))
    cli(gw.env("evaluator", tmp_path / "eve-home"), "keygen", "--yes", "-o", str(identity))
    return signing, identity


def _wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _push_args(path: Path, signing: Path) -> list[str]:
    return ["push", str(path), "--share-with", "ai-safety-institute", "--signing-key", str(signing)]


def _state(home: Path) -> dict[str, object] | None:
    found = list((home / "gateway" / "pushes").glob("*.json"))
    return json.loads(found[0].read_text()) if found else None


def test_an_interrupted_push_names_its_upload_and_the_command_that_resumes(
    gw: LocalGateway, tmp_path: Path
) -> None:
    signing, _ = _keys(gw, tmp_path)
    weights = tmp_path / "weights.bin"
    write_weights(weights, 120 * MIB, seed=b"sigint")
    env = gw.env("lab", tmp_path / "lab-home")
    proc = subprocess.Popen(
        [*gateway_command(), *_push_args(weights, signing), "--jobs", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait(lambda: _state(tmp_path / "lab-home") is not None)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    upload = str((_state(tmp_path / "lab-home") or {})["upload"])
    assert proc.returncode == 130, err
    lines = err.decode().splitlines()
    assert re.match(
        rf"gateway: error: interrupted; upload {upload} holds \d+ of \d+ parts$", lines[0]
    ), lines
    assert lines[1] == (
        "gateway: hint: run the same command again, or "
        f"`gateway push --resume {upload} --signing-key {signing}`, to send only what is missing"
    )
    again = cli(env, *_push_args(weights, signing), "--quiet")
    assert f"gateway: resuming upload {upload} (interrupted earlier)" in again.stderr.decode()


def test_a_push_whose_gateway_stops_is_told_within_seconds(tmp_path: Path) -> None:
    with LocalGateway(part_mib=5) as gw:
        signing, _ = _keys(gw, tmp_path)
        weights = tmp_path / "weights.bin"
        write_weights(weights, 200 * MIB, seed=b"killed")
        env = gw.env("lab", tmp_path / "lab-home")
        proc = subprocess.Popen(
            [*gateway_command(), *_push_args(weights, signing), "--jobs", "1", "--quiet"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait(lambda: _state(tmp_path / "lab-home") is not None)
        time.sleep(0.3)
        assert gw.process is not None
        os.killpg(gw.process.pid, signal.SIGKILL)  # the server and its workers, at once
        gw.process.wait()
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    upload = str((_state(tmp_path / "lab-home") or {})["upload"])
    lines = err.decode().splitlines()
    assert proc.returncode == 1 and took < 12, (took, lines)
    assert lines[-2].startswith(f"gateway: error: cannot reach the gateway at {gw.url}")
    assert f"; upload {upload} holds " in lines[-2]
    assert lines[-1].startswith(
        "gateway: hint: run the same command again, or `gateway push --resume"
    )


def _pull(gw: LocalGateway, tmp_path: Path, size: int) -> tuple[list[str], dict[str, str], Path]:
    signing, identity = _keys(gw, tmp_path)
    weights = tmp_path / "weights.bin"
    write_weights(weights, size, seed=b"pull")
    lab = gw.env("lab", tmp_path / "lab-home")
    artifact = json.loads(cli(lab, *_push_args(weights, signing), "--json", "--quiet").stdout)["id"]
    eve = gw.env("evaluator", tmp_path / "eve-home")
    request = json.loads(cli(eve, "request", artifact, "--justification", "t", "--json").stdout)
    cli(lab, "approve", request["id"])
    out = tmp_path / "pulled.bin"
    return ["pull", artifact, "-o", str(out), "-i", str(identity)], eve, out


def test_an_interrupted_pull_says_what_it_kept_and_a_resumed_one_says_it_resumes(
    gw: LocalGateway, tmp_path: Path
) -> None:
    args, env, out = _pull(gw, tmp_path, 150 * MIB)
    partial = out.with_name(out.name + ".part")
    proc = subprocess.Popen(
        [*gateway_command(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait(lambda: partial.exists() and partial.stat().st_size > 10 * MIB)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = stopped(err)
    assert proc.returncode == 130, lines
    assert re.match(
        rf"gateway: error: interrupted; [0-9.]+ MiB of 150\.0 MiB kept in {partial} \(decrypted, "
        r"each chunk authenticated, not yet verified, mode 0600\)$",
        lines[0],
    ), lines
    assert lines[1] == f"gateway: hint: run `gateway pull {' '.join(args[1:])}` to resume"
    again = cli(env, *args)
    said = again.stderr.decode()
    assert f"gateway: resuming: {partial} already holds " in said, said
    assert out.stat().st_size == 150 * MIB and not partial.exists()


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_pull_that_cannot_write_says_where_and_keeps_what_it_has(
    gw: LocalGateway, tmp_path: Path
) -> None:
    args, env, out = _pull(gw, tmp_path, 40 * MIB)
    partial = out.with_name(out.name + ".part")
    done = subprocess.run(
        [*gateway_command(), *args],
        env=env,
        capture_output=True,
        preexec_fn=_limit_file_size(8 * MIB),  # noqa: PLW1509 - the child sets its own limit
        check=False,
    )
    lines = stopped(done.stderr)
    assert done.returncode == 1, lines
    assert re.match(
        rf"gateway: error: cannot write {partial}: File too large; [0-9.]+ MiB of 40\.0 MiB kept "
        rf"in {partial}",
        lines[0],
    ), lines
    assert lines[1].startswith(
        "gateway: hint: free some space (or fix the disk), then run `gateway pull"
    )
    assert partial.exists() and not out.exists()
    cli(env, *args)  # without the limit, it resumes and completes
    assert out.stat().st_size == 40 * MIB
