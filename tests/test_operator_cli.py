"""The operator's commands through the real ``gateway`` group: config, audit entries, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway import cli, models
from gateway.audit import store as audit_store
from gateway.config import load
from gateway.runtime import Runtime


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration keeping everything under ``tmp_path``, named only by ``--config``."""
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        f'[storage]\nroot = "{tmp_path / "objects"}"\n'
        f'[keys]\ndir = "{tmp_path / "keys"}"\n'
        f'[audit]\narchive_dir = "{tmp_path / "audit"}"\norigin = "cli.test/audit"\n'
    )
    return path


def gateway(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(cli.main, ["--config", str(config_file), *args])


def entries(config_file: Path, action: str) -> list[dict[str, Any]]:
    """The audit entries of ``action``, as their leaves say."""
    gw = Runtime(load(config_file))
    try:
        with gw.db.session() as session:
            leaves = [json.loads(leaf) for _, leaf in audit_store.iter_leaves(session)]
    finally:
        gw.close()
    return [entry for entry in leaves if entry["action"] == action]


def principal_id(config_file: Path, org: str, name: str) -> str:
    gw = Runtime(load(config_file))
    try:
        with gw.db.session() as session:
            row = session.query(models.Principal).filter_by(org=org, name=name).one()
            return str(row.id)
    finally:
        gw.close()


def test_token_entries_name_the_principal_by_id_and_by_name(config_file: Path) -> None:
    assert gateway(config_file, "init").exit_code == 0
    assert gateway(config_file, "admin", "org", "create", "lab-a", "--kind", "lab").exit_code == 0
    made = gateway(
        config_file,
        *("admin", "token", "create", "--org", "lab-a", "--role", "lab", "--name", "ann"),
        *("--ttl-days", "7"),
    )
    assert made.exit_code == 0 and made.stdout.startswith("gw_"), made.output
    revoked = gateway(config_file, "admin", "token", "revoke", "--org", "lab-a", "--name", "ann")
    assert revoked.exit_code == 0 and "revoked 1 token(s)" in revoked.output
    assert gateway(config_file, "dev-seed").exit_code == 0

    ann = principal_id(config_file, "lab-a", "ann")
    assert ann.startswith("prn_")
    created = entries(config_file, "admin.token.create")
    assert created[0]["details"] == {
        "org": "lab-a",
        "principal": ann,
        "name": "ann",
        "role": "lab",
        "ttl_days": 7,
    }
    seeded = {e["details"]["name"]: e["details"] for e in created[1:]}
    assert seeded["alice"]["principal"] == principal_id(config_file, "demo-lab", "alice")
    assert seeded["alice"]["development"] is True
    (revoke,) = entries(config_file, "admin.token.revoke")
    assert revoke["details"] == {"org": "lab-a", "principal": ann, "name": "ann", "count": 1}


def test_a_bad_setting_and_a_missing_principal_are_one_line(
    config_file: Path, tmp_path: Path
) -> None:
    missing = CliRunner().invoke(cli.main, ["--config", str(tmp_path / "nope.toml"), "init"])
    assert missing.exit_code == 1
    assert missing.output == f"gateway: error: config file {tmp_path / 'nope.toml'}: not found\n"
    assert gateway(config_file, "init").exit_code == 0
    unknown = gateway(config_file, "admin", "token", "revoke", "--org", "operator", "--name", "x")
    assert unknown.exit_code == 1
    assert unknown.output == "gateway: error: principal x not found in operator\n"
    assert entries(config_file, "admin.token.revoke") == [], "nothing is recorded for a refusal"


def test_an_unwritable_keys_directory_is_reported_with_its_path(
    config_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "keys").write_text("a file where the keys directory should be")
    done = gateway(config_file, "init")
    assert done.exit_code == 1
    assert done.output.startswith(f"gateway: error: {tmp_path / 'keys'}: ") and (
        "Traceback" not in done.output
    ), done.output


def test_a_store_that_cannot_be_made_is_one_line(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "objects").write_text("a file where the object store should be")
    done = gateway(config_file, "init")
    assert done.exit_code == 1
    assert done.output.splitlines()[-1] == (
        f"gateway: error: cannot create {tmp_path / 'objects'}: File exists"
    ), done.output


def test_an_unusable_database_is_one_line_and_never_shows_its_password(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gw.db").write_text("not a database")
    done = gateway(config_file, "init")
    assert done.exit_code == 1
    assert (
        done.output.splitlines()[-1]
        == "gateway: error: the database refused: file is not a database"
    )
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql://ann:hunter2secret@127.0.0.1:1/gw")
    done = gateway(config_file, "init")
    assert done.exit_code == 1 and "Traceback" not in done.output, done.output
    assert done.output.splitlines()[-1].startswith("gateway: error: "), done.output
    assert "hunter2secret" not in done.output


def test_the_choices_offered_are_the_models_own() -> None:
    assert set(cli.ORG_KINDS) == {k.value for k in models.OrgKind} - {"operator"}
    assert set(cli.ROLES) == {r.value for r in models.Role}


class _Me(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"name": "eve", "org": "agency", "role": "evaluator"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def me_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Me)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("flags", "logged"), [([], False), (["-v"], False), (["-vv"], True)])
def test_verbose_logs_each_request_but_never_the_token(
    me_server: str, tmp_path: Path, flags: list[str], logged: bool
) -> None:
    token = "gw_secret_token_never_logged"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *flags, "whoami"],
        env={"GATEWAY_URL": me_server, "GATEWAY_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("eve (evaluator) of agency")
    assert ("gateway: DEBUG: gateway.client.http: GET /v1/me: 200" in done.stderr) is logged
    assert token not in done.stderr and token not in done.stdout


def test_a_database_url_is_printed_without_its_password() -> None:
    from gateway.bootstrap import shown_url

    assert (
        shown_url("postgresql://ann:hunter2@db.example/gw") == "postgresql://ann:***@db.example/gw"
    )
    assert shown_url("sqlite:///var/gateway.db") == "sqlite:///var/gateway.db"


def test_the_operator_revokes_a_signing_key_on_record(config_file: Path) -> None:
    from nacl.signing import SigningKey

    from gateway.caller import Actor, Caller
    from gateway.client import possession
    from gateway.services import identity

    assert gateway(config_file, "init").exit_code == 0
    assert gateway(config_file, "admin", "org", "create", "lab-a", "--kind", "lab").exit_code == 0
    made = gateway(
        config_file, "admin", "token", "create", "--org", "lab-a", "--role", "lab", "--name", "ann"
    )
    assert made.exit_code == 0, made.output
    body = possession.prove(SigningKey.generate(), "lab-a", "ann")
    gw = Runtime(load(config_file))
    try:
        ann = Actor(principal_id(config_file, "lab-a", "ann"), "ann", "lab-a", "lab")
        identity.register_signing_key(gw, Caller(ann), body["public_key"], body["proof"])
    finally:
        gw.close()

    revoke = ("admin", "signing-key", "revoke")
    unknown = gateway(config_file, *revoke, "--org", "lab-a", "--key", "key_nope")
    assert unknown.exit_code == 1
    assert unknown.output == "gateway: error: organisation lab-a has no signing key key_nope\n"
    elsewhere = gateway(config_file, *revoke, "--org", "operator", "--key", body["public_key"])
    assert elsewhere.exit_code == 1, "a key is revoked only as the org that holds it"
    assert entries(config_file, "identity.signing_key.revoke") == []

    done = gateway(config_file, *revoke, "--org", "lab-a", "--key", body["public_key"])
    assert done.exit_code == 0, done.output
    (entry,) = entries(config_file, "identity.signing_key.revoke")
    assert entry["actor"] == "cli" and entry["subject_org"] == "lab-a"
    assert entry["details"]["public_key"] == body["public_key"]
    assert (entry["details"]["old"], entry["details"]["new"]) == ("active", "revoked")
    assert done.output == f"gateway: signing key {entry['details']['key']} of lab-a revoked\n"
    twice = gateway(config_file, *revoke, "--org", "lab-a", "--key", entry["details"]["key"])
    assert twice.exit_code == 1 and "already revoked" in twice.output
    assert len(entries(config_file, "identity.signing_key.revoke")) == 1
