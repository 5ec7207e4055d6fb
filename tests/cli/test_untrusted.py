"""The client trusts nothing it is shown: server strings are text, and manifests are bound."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from gateway.cli import main
from gateway.client.progress import Meter
from gateway.tui import shown
from tests.cli.conftest import Live
from tests.client.fakeserver import Routes, serving_routes

MARKUP = "[/bold] [link=https://evil.example]click[/link] [white on white]hidden"
HOSTILE = "evil\x1b[2J\x1b]8;;https://x\x07\u202etxt.exe\u200b\u2066\x00\x85end"
RAW = ("\x1b", "\u202e", "\u200b", "\u2066", "\x00", "\x85", "\x07")


def _clean(text: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{ch!r} reached the terminal"


def test_markup_in_a_justification_is_shown_as_text_never_interpreted(live: Live) -> None:
    artifact = live.push()
    live.call(
        "eval",
        "POST",
        f"/v1/artifacts/{artifact['id']}/access-requests",
        json={"justification": MARKUP},
    )
    done = live.gateway("lab", "requests", COLUMNS="400")
    assert done.exit_code == 0, done.output
    assert MARKUP in done.stdout


def test_control_and_bidi_characters_from_a_gateway_are_shown_escaped(tmp_path: Path) -> None:
    art = _artifact(name=HOSTILE, org="lab\u202e-a", share_with=["agency\x1b[8m"])
    routes = Routes(
        {
            ("GET", "/v1/artifacts"): (200, {"items": [art], "next_cursor": None}),
            ("GET", f"/v1/artifacts/{art['id']}"): (200, art),
            ("GET", "/v1/artifacts/art_gone"): (404, {"status": 404, "detail": HOSTILE}),
        }
    )
    with serving_routes(routes) as url:
        env = {"GATEWAY_URL": url, "GATEWAY_TOKEN": "gw_x", "XDG_CONFIG_HOME": str(tmp_path)}
        runner = CliRunner(env={**env, "COLUMNS": "400"})
        for args in (["artifacts"], ["artifact", art["id"]], ["artifact", "art_gone"]):
            done = runner.invoke(main, args)
            _clean(done.output)
            assert shown(HOSTILE) in done.output, (args, done.output)
    failed = runner.invoke(main, ["artifact", "art_gone"])
    assert failed.exit_code == 1


def test_a_name_in_the_progress_bar_is_text(tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    with Meter(f"pull {MARKUP}{HOSTILE}", 10, enabled=True, console=console) as meter:
        meter.advance(10)
    text = screen.getvalue()
    assert MARKUP in text and shown(HOSTILE) in text
    for ch in RAW[1:]:
        assert ch not in text


def test_every_line_the_terminal_module_prints_is_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway import tui

    tui.say(HOSTILE)
    tui.hint(HOSTILE)
    with pytest.raises(SystemExit):
        tui.fail(HOSTILE, hint=HOSTILE)
    err = capsys.readouterr().err
    _clean(err)
    assert err.count(shown(HOSTILE)) == 4


def test_pull_refuses_another_artifacts_genuine_manifest(live: Live, tmp_path: Path) -> None:
    """A gateway that serves an older artifact of the same lab, with that artifact's real,
    signed manifest, under the id asked for, is caught before any content is fetched."""
    older = live.push(b"old weights", name="model-v1")
    newer = live.push(b"new weights", name="model-v2")
    keys = live.call("eval", "GET", "/v1/orgs/lab-a/signing-keys")
    for field, lie in (
        ("manifest", {**newer, "manifest": older["manifest"], "signature": older["signature"]}),
        ("kind", {**newer, "kind": "credential"}),
    ):
        routes = Routes(
            {
                ("GET", f"/v1/artifacts/{newer['id']}"): (200, lie),
                ("GET", "/v1/orgs/lab-a/signing-keys"): (200, keys),
            }
        )
        identity = tmp_path / "id.agekey"
        identity.write_text("AGE-SECRET-KEY-1" + "Q" * 58 + "\n")
        with serving_routes(routes) as url:
            done = CliRunner(
                env={"GATEWAY_URL": url, "GATEWAY_TOKEN": "gw_x", "XDG_CONFIG_HOME": str(tmp_path)}
            ).invoke(main, ["pull", newer["id"], "-o", str(tmp_path / "out"), "--raw"])
        assert done.exit_code == 1, (field, done.output)
        assert "not this artifact's manifest" in done.stderr, done.stderr
        assert not any(path.endswith("/content") for _, path in routes.seen), routes.seen
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_pull_names_the_manifests_artifact_when_it_succeeds(live: Live, tmp_path: Path) -> None:
    artifact = live.push(b"the weights", name="model-v3")
    identity = tmp_path / "eval.agekey"
    made = live.gateway("eval", "keygen", "-o", str(identity))
    assert made.exit_code == 0, made.output
    live.grant(artifact["id"])
    done = live.gateway(
        "eval", "pull", artifact["id"], "-o", str(tmp_path / "w"), "-i", str(identity)
    )
    assert done.exit_code == 0, done.output
    assert f"model-v3 (upload {artifact['upload']}), signed by lab-a" in done.stderr


def _artifact(**fields: Any) -> dict[str, Any]:
    return {
        "id": "art_0123456789abcdef0123",
        "name": "model",
        "kind": "weights",
        "org": "lab-a",
        "size": 1234,
        "state": "available",
        "share_with": ["agency-a"],
        "submitted_at": "2026-11-27T04:18:22Z",
        "review_ends_at": "2026-12-27T04:18:22Z",
        "upload": "up_0123456789abcdef0123",
        "manifest": {"plaintext": {"size": 1000, "sha256": "0" * 64}},
        "signature": "",
        **fields,
    }
