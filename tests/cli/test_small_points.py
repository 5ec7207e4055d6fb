"""The small points: grant hours, profiles checked, confirmations, click's errors, stdin pushes,
leftover uploads, the kind said, the words of refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.client import push as pushing
from gateway.client import state
from gateway.client.http import Api
from tests.cli.conftest import Live


def _request(live: Live, artifact: str, **body: object) -> str:
    made = live.call(
        "eval",
        "POST",
        f"/v1/artifacts/{artifact}/access-requests",
        json={"justification": "j", **body},
    )
    return str(made["id"])


def test_approve_speaks_of_hours_and_the_real_limit(live: Live) -> None:
    asked = _request(live, live.push(b"w", name="a")["id"], duration_hours=24)
    done = live.gateway("lab", "approve", asked, "--hours", "100")
    assert done.exit_code == 1 and done.stderr.splitlines() == [
        "gateway: error: --hours 100 is more than the 24 hours the evaluator asked for",
        "gateway: hint: a lab can only shorten a grant: give --hours 24 or less, or leave it out",
    ]
    unasked = _request(live, live.push(b"w", name="b")["id"])
    done = live.gateway("lab", "approve", unasked, "--hours", "100")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[0] == (
        "gateway: error: --hours 100 is more than the 72 hours this grant may last"
    )
    assert "duration_hours" not in done.stderr
    ok = live.gateway("lab", "approve", unasked, "--hours", "10")
    grant = live.call("lab", "GET", "/v1/grants")["items"][0]
    assert ok.exit_code == 0 and f"until {grant['not_after']} (" in ok.stderr, ok.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("127.0.0.1:8080", "'127.0.0.1:8080' is not a gateway address"),
        ("ftp://gw.example", "is not a gateway address"),
    ],
)
def test_a_profile_url_is_checked_when_saved(live: Live, url: str, fragment: str) -> None:
    done = live.gateway(None, "profile", "set", "x", "--url", url, input="gw_abc\n")
    assert done.exit_code == 1 and fragment in done.stderr, done.stderr
    assert not (live.home / "gateway" / "profiles.toml").exists()


def test_a_profile_token_is_checked_with_the_gateway_when_saved(live: Live) -> None:
    bad = live.gateway(None, "profile", "set", "x", "--url", live.url, input="gw_notatoken\n")
    assert bad.exit_code == 1
    assert bad.stderr.startswith(f"gateway: error: the gateway at {live.url} refused this token")
    assert not (live.home / "gateway" / "profiles.toml").exists()
    form = live.gateway(None, "profile", "set", "x", "--url", live.url, input="hunter2\n")
    assert form.exit_code == 1 and "not a gateway token" in form.stderr
    token = live.principals.tokens["lab"] + "\n"
    good = live.gateway(None, "profile", "set", "lab", "--url", live.url + "/", input=token)
    assert good.exit_code == 0
    assert good.stderr.endswith(": lab (lab) of lab-a\n"), good.stderr
    offline = live.gateway(
        None, "profile", "set", "far", "--url", "http://127.0.0.1:9", input=token
    )
    assert offline.exit_code == 1 and "--no-check" in offline.stderr
    only_named = live.gateway(None, "whoami")
    assert only_named.stderr == (
        "gateway: error: no profile named 'default': choose one of lab with --profile NAME or "
        "GATEWAY_PROFILE=NAME\n"
    )
    assert live.gateway(None, "whoami", GATEWAY_PROFILE="lab").exit_code == 0


def test_https_against_a_plain_gateway_is_one_line_with_a_hint(live: Live) -> None:
    https = live.url.replace("http://", "https://")
    done = live.gateway("lab", "whoami", GATEWAY_URL=https)
    assert done.exit_code == 1 and done.stderr.splitlines() == [
        f"gateway: error: cannot reach the gateway at {https}: the TLS handshake failed",
        "gateway: hint: if the gateway is served over plain HTTP, use an http:// URL",
    ]


def test_a_resumed_push_says_whom_it_shares_with(live: Live, tmp_path: Path) -> None:
    key = tmp_path / "lab.key"
    assert live.gateway("lab", "keygen", "-o", str(key)).exit_code == 0
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 5000)
    req = pushing.PushRequest(weights, "weights.bin", "weights", ("agency-a",))
    previous = state.config_dir
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(live.home))
        saved = pushing.start_or_resume(Api(live.url, live.principals.tokens["lab"]), req)
    assert previous is state.config_dir
    done = live.gateway("lab", "push", "--resume", saved.upload, "--signing-key", str(key))
    assert done.exit_code == 0, done.output
    pushed = [line for line in done.stderr.splitlines() if line.startswith("gateway: pushed")]
    assert pushed[0].endswith("shared with agency-a"), done.stderr


def test_an_artifact_is_shown_in_words(live: Live) -> None:
    artifact = live.push(b"w" * 3000, name="model-w")
    shown = live.gateway("eval", "artifact", artifact["id"]).stdout.splitlines()
    assert "shared with:    agency-a" in shown
    assert any(line.startswith("size:           ") and "KiB" in line for line in shown), shown
    assert not any("['" in line for line in shown)


@pytest.mark.parametrize("command", ["withdraw", "revoke"])
def test_a_destructive_command_names_its_object_and_needs_yes_without_a_terminal(
    live: Live, command: str
) -> None:
    artifact = live.push(b"w", name="model-to-end")
    grant = live.grant(artifact["id"])
    target = artifact["id"] if command == "withdraw" else grant["id"]
    done = live.gateway("lab", command, target)
    assert done.exit_code == 1 and "Aborted" not in done.output
    lines = done.stderr.splitlines()
    assert "model-to-end" in lines[0] and "there is no terminal to ask at" in lines[0], lines
    assert lines[1] == "gateway: hint: pass --yes to go ahead without being asked"
    assert live.call("lab", "GET", f"/v1/artifacts/{artifact['id']}")["state"] == "available"
    yes = live.gateway("lab", command, target, "--yes")
    assert yes.exit_code == 0 and "model-to-end" in yes.stderr, yes.output


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["pull"], "gateway: error: missing argument 'ARTIFACT'"),
        (
            ["pull", "art_x", "-o", "y", "-i", "no-such-file"],
            "gateway: error: invalid value for '-i' / '--identity': file 'no-such-file' does not exist",
        ),
        (
            ["artifacts", "--wdie"],
            "gateway: error: no such option '--wdie'; did you mean '--wide'?",
        ),
    ],
)
def test_clicks_own_errors_speak_in_the_gateways_voice(
    tmp_path: Path, args: list[str], first: str
) -> None:
    done = CliRunner().invoke(main, args, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert done.exit_code == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith(first), lines
    assert lines[-1].startswith("gateway: hint: see `gateway ") and "Usage:" not in done.stderr


def test_a_credential_can_be_pushed_from_standard_input(
    live: Live, tmp_path: Path, evaluator_key: Path
) -> None:
    key = tmp_path / "lab.key"
    assert live.gateway("lab", "keygen", "-o", str(key)).exit_code == 0
    args = [
        "push",
        "-",
        "--name",
        "endpoint",
        "--share-with",
        "agency-a",
        "--signing-key",
        str(key),
    ]
    done = live.gateway("lab", *args, "--json", input=b"API_KEY=sk-123\n")
    assert done.exit_code == 0, done.output
    artifact = json.loads(done.stdout)
    assert artifact["kind"] == "credential"
    assert not list((live.home / "gateway" / "pushes").glob("*.json")), "no state kept for stdin"
    live.grant(artifact["id"])
    pulled = live.gateway("eval", "pull", artifact["id"], "-o", "-", "-i", str(evaluator_key))
    assert pulled.stdout == "API_KEY=sk-123\n"
    weights = live.gateway("lab", *args, "--kind", "weights", input=b"x")
    assert weights.exit_code == 1 and "only a credential" in weights.stderr


def test_the_kind_a_push_defaulted_to_is_said(live: Live, tmp_path: Path) -> None:
    key = tmp_path / "lab.key"
    assert live.gateway("lab", "keygen", "-o", str(key)).exit_code == 0
    small = tmp_path / "token.txt"
    small.write_text("API_KEY=1\n")
    done = live.gateway(
        "lab", "push", str(small), "--share-with", "agency-a", "--signing-key", str(key)
    )
    assert done.exit_code == 0, done.output
    assert "(weights, 10 bytes)" in done.stderr
    assert "is pushed with --kind credential" in done.stderr.splitlines()[-1]


def test_leftover_uploads_are_listed_and_aborted(live: Live, tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 5000)
    req = pushing.PushRequest(weights, "weights.bin", "weights", ("agency-a",))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(live.home))
        saved = pushing.start_or_resume(Api(live.url, live.principals.tokens["lab"]), req)
    listed = live.gateway("lab", "uploads")
    assert listed.exit_code == 0 and saved.upload in listed.stdout and "open" in listed.stdout
    refused = live.gateway("lab", "uploads", "abort", saved.upload[:10])
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    done = live.gateway("lab", "uploads", "abort", saved.upload[:10], "--yes")
    assert done.exit_code == 0, done.output
    assert live.call("lab", "GET", f"/v1/uploads/{saved.upload}")["state"] == "aborted"
    assert (
        live.gateway("lab", "uploads").stderr == "gateway: no interrupted pushes on this machine\n"
    )


def test_a_role_refusal_says_what_the_role_may_not_do(live: Live) -> None:
    asked = _request(live, live.push(b"w")["id"])
    done = live.gateway("eval", "approve", asked)
    assert done.exit_code == 1
    assert done.stderr.startswith(
        "gateway: error: an evaluator may not approve or deny access requests (the lab that "
        "owns the artifact does)"
    ), done.stderr
    assert "access.decide" not in done.stderr


def test_revoking_a_grant_whose_key_was_released_says_what_cannot_be_recalled(
    live: Live, evaluator_key: Path
) -> None:
    artifact = live.push(b"secret", name="endpoint", kind="credential")
    grant = live.grant(artifact["id"])
    assert (
        live.gateway("eval", "pull", artifact["id"], "-o", "-", "-i", str(evaluator_key)).exit_code
        == 0
    )
    done = live.gateway("lab", "revoke", grant["id"][:12], "--yes")
    assert done.exit_code == 0, done.output
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"gateway: grant {grant['id']} of eval@agency-a on endpoint ({artifact['id'][:12]}) revoked"
    )
    assert lines[1].startswith("gateway: hint: its key was released to age1")
    assert lines[1].endswith("what was already downloaded cannot be recalled")


def test_a_role_an_organisation_cannot_have_is_refused_in_plain_words(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n[keys]\ndir = "{tmp_path / "k"}"\n'
        f'[storage]\nroot = "{tmp_path / "o"}"\n[audit]\narchive_dir = "{tmp_path / "a"}"\n'
    )
    run = CliRunner(env={"GATEWAY_CONFIG": str(config)})
    assert run.invoke(main, ["init"]).exit_code == 0
    assert (
        run.invoke(main, ["admin", "org", "create", "agency2", "--kind", "agency"]).exit_code == 0
    )
    args = ["admin", "token", "create", "--org", "agency2", "--role", "lab", "--name", "x"]
    done = run.invoke(main, args)
    assert done.exit_code == 1
    assert done.stderr == (
        "gateway: error: role lab does not fit organisation agency2: it is an agency, whose "
        "principals are evaluators\n"
    )
