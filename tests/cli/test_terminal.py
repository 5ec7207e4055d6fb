"""The main tables and the progress bar on real terminals of 80 and 120 columns (a pty).

Every line must fit the terminal, no id may be cut or wrapped (each row is one line, and
every id shown has its whole short form), and the bar's units agree (MiB with MiB/s).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.harness import LocalGateway, cli, gateway_command, write_weights

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIB = 1 << 20
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
ID = re.compile(r"\b(art|req|grt|prn|up)_([0-9a-f]*)")
LONG_NAME = "frontier-model-with-a-rather-long-name-v1.safetensors"


def on_terminal(args: list[str], env: Mapping[str, str], columns: int) -> list[str]:
    """Run ``gateway ARGS`` with stdout and stderr on a pty ``columns`` wide; its screen lines."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [*gateway_command(), *args],
        env={**env, "COLUMNS": str(columns), "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    data = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, data.decode(errors="replace")
    text = ANSI.sub("", data.decode(errors="replace"))
    return [line for piece in text.split("\n") for line in piece.split("\r") if line.strip()]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGateway, Path]]:
    """A gateway with an artifact of a long name, a request, a grant and their audit entries."""
    root = tmp_path_factory.mktemp("terminal")
    with LocalGateway(part_mib=5) as gw:
        signing, identity = root / "lab.key", root / "eve.agekey"
        cli(gw.env("lab"), "keygen", "-o", str(signing))
        cli(gw.env("evaluator"), "keygen", "-o", str(identity))
        weights = root / LONG_NAME
        write_weights(weights, 40 * MIB, seed=b"terminal")
        push = ["push", "--share-with", "ai-safety-institute", "--signing-key", str(signing)]
        artifact = json.loads(cli(gw.env("lab"), *push, str(weights), "--json").stdout)["id"]
        (root / "credential.txt").write_text("API_KEY=1\n")
        other = json.loads(
            cli(
                gw.env("lab"), *push, str(root / "credential.txt"), "--kind", "credential", "--json"
            ).stdout
        )["id"]
        why = "pre-deployment cyber evaluation of the model's offensive capabilities"
        cli(gw.env("evaluator"), "request", artifact, "--justification", why)
        request = json.loads(cli(gw.env("lab"), "requests", "--json").stdout)[0]["id"]
        cli(gw.env("lab"), "approve", request, "--hours", "48")
        cli(gw.env("evaluator"), "request", other, "--justification", "the endpoint, please")
        yield gw, root


def _check(lines: list[str], columns: int, rows: int | None = None) -> None:
    assert all(len(line) <= columns for line in lines), [x for x in lines if len(x) > columns]
    for line in lines:
        for _, hexes in ID.findall(line):
            assert len(hexes) >= 8, f"an id cut short: {line!r}"
    if rows is not None:
        body = [line for line in lines if ID.search(line)]
        assert len(body) == rows, lines


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize(
    ("role", "args", "rows"),
    [
        ("evaluator", ["artifacts"], 2),
        ("lab", ["requests"], 2),
        ("lab", ["grants"], 1),
        ("auditor", ["audit", "tail", "-n", "12"], None),
    ],
)
def test_the_main_tables_fit_and_keep_every_id_whole(
    story: tuple[LocalGateway, Path], columns: int, role: str, args: list[str], rows: int | None
) -> None:
    gw, _ = story
    lines = on_terminal(args, gw.env(role), columns)
    _check(lines, columns, rows)
    if args == ["requests"]:
        assert any("eve@ai-safety-institute" in line for line in lines), lines
    if args == ["artifacts"]:
        assert any("MiB" in line and "in 30 days" in line for line in lines), lines


@pytest.mark.parametrize("columns", [80, 120])
def test_the_progress_bar_is_one_line_in_one_unit(
    story: tuple[LocalGateway, Path], columns: int
) -> None:
    gw, root = story
    listed = json.loads(cli(gw.env("evaluator"), "artifacts", "--json").stdout)
    artifact = next(a["id"] for a in listed if a["name"] == LONG_NAME)
    out = root / f"pulled-{columns}.bin"
    lines = on_terminal(
        ["pull", artifact, "-o", str(out), "-i", str(root / "eve.agekey")],
        gw.env("evaluator"),
        columns,
    )
    bars = [line for line in lines if not line.startswith("gateway: ")]
    assert bars, lines
    assert all(len(bar) <= columns for bar in bars), [b for b in bars if len(b) > columns]
    assert all("MiB/s" in bar or "-" in bar for bar in bars) and not any("MB/s" in x for x in lines)
    assert any(bar.startswith("pull frontier-model") and "MiB" in bar for bar in bars), bars
    out.unlink()
