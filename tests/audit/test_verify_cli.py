"""`gateway audit verify --file EXPORT --since SAVED` catches every tampering, naming where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit import leaf as leafmod
from gateway.audit import note, verify
from gateway.cli import main
from gateway.db import Database
from tests.audit.test_verify import CASES, N, _forge, _leaves, log  # noqa: F401 - the log fixture


def _changed_byte(leaves: list[bytes]) -> list[bytes]:
    entry = json.loads(leaves[7])
    entry["actor"] = "prn_someone_else"
    return leaves[:7] + [leafmod.canonical_json(entry)] + leaves[8:]


TAMPERINGS = {**{name: case[0] for name, case in CASES.items()}, "changed-entry": _changed_byte}


def _run(tmp_path: Path, lines: list[str], vkey: str, *saved: str) -> tuple[int, str]:
    (tmp_path / "export.jsonl").write_text("".join(lines))
    args = ["audit", "verify", "--key", vkey, "--file", str(tmp_path / "export.jsonl")]
    for i, text in enumerate(saved):
        (tmp_path / f"saved-{i}.checkpoint").write_text(text)
        args += ["--since", str(tmp_path / f"saved-{i}.checkpoint")]
    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


def test_an_honest_export_verifies(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811 - the imported fixture
) -> None:
    leaves = _leaves(db)
    code, out = _run(
        tmp_path, list(verify.export_lines(enumerate(leaves), log[N])), signer.verifier_key, log[20]
    )
    assert code == 0 and out.startswith("ok"), out


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_each_tampering_fails_with_where(
    tmp_path: Path,
    name: str,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    leaves = TAMPERINGS[name](_leaves(db))
    lines = list(
        verify.export_lines(enumerate(leaves), _forge(leaves, signer))
    )  # re-signed with the log's key
    code, out = _run(tmp_path, lines, signer.verifier_key, log[N])
    assert code == 1 and out.startswith("FAILED"), out
    expected = verify.verify_export(lines, signer.verifier_key, earlier=[log[N]])
    assert not expected.ok
    assert out.splitlines()[0] == expected.line(), "the CLI prints the verdict's one line"
    if expected.first_bad_index is not None:
        assert f"; first bad entry: {expected.first_bad_index}" in out, out
    elif expected.problem.startswith("the export is older than a saved checkpoint"):
        # fewer entries than the saved checkpoint, re-signed: offline, a stale export
        assert "export the log again" in out and "shrank" not in out, out
    else:
        assert f"between {expected.intact_prefix} and" in out, out


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_saved_checkpoints_at_every_size_name_the_first_bad_entry(
    tmp_path: Path,
    name: str,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    """Published anchors are saved checkpoints too: with one at every size, the change is pinned."""
    leaves = TAMPERINGS[name](_leaves(db))
    lines = list(verify.export_lines(enumerate(leaves), _forge(leaves, signer)))
    code, out = _run(tmp_path, lines, signer.verifier_key, *(log[k] for k in range(1, N + 1)))
    first = {"changed-entry": 7}.get(name) or CASES[name][2]
    assert code == 1 and f"first bad entry: {first}" in out, out


def test_a_stale_export_is_told_as_stale(
    tmp_path: Path,
    db: Database,
    signer: note.Signer,
    log: dict[int, str],  # noqa: F811
) -> None:
    leaves = _leaves(db)[:27]
    lines = list(verify.export_lines(enumerate(leaves), log[27]))
    code, out = _run(tmp_path, lines, signer.verifier_key, log[N])
    assert code == 1
    assert out.splitlines()[0].startswith(
        "FAILED: the export is older than a saved checkpoint: it holds 27 entries, the saved "
        f"checkpoint {N}"
    ), out
    assert "shrank" not in out and "first bad entry" not in out
