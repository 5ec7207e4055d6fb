"""The client runs without the server stack: nothing it imports needs Flask, SQLAlchemy or boto3.

Each check runs in a fresh interpreter whose import system refuses the server's modules
(as a client-only install lacks them), so an import anywhere on the client's path fails
the check, however indirect.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SERVER_MODULES = [
    "alembic",
    "boto3",
    "botocore",
    "flask",
    "gunicorn",
    "prometheus_client",
    "sqlalchemy",
    "werkzeug",
]
CLIENT_COMMANDS = {
    "approve",
    "artifact",
    "artifacts",
    "audit",
    "deny",
    "grants",
    "keygen",
    "oms-key",
    "profile",
    "pull",
    "push",
    "request",
    "requests",
    "revoke",
    "signing-key",
    "uploads",
    "whoami",
    "withdraw",
}
OPERATOR_COMMANDS = {"admin", "dev-seed", "init", "serve", "sweep", "witness"}

BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {SERVER_MODULES!r}


class RefuseServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, RefuseServer())
"""

WALK = """
import json

import click
from click.testing import CliRunner


def paths(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from paths(command, (*prefix, name))


def helps(main):
    out = {}
    for path in paths(main):
        done = CliRunner().invoke(main, [*path, "--help"])
        out[" ".join(path)] = [done.exit_code, done.output.splitlines()[0] if done.output else ""]
    return out
"""


def run(body: str, tmp_path: Path) -> dict[str, object]:
    """Run ``body`` with the server's modules refused; the JSON it prints last."""
    script = BLOCKER + WALK + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_every_client_command_has_its_help_without_the_server(tmp_path: Path) -> None:
    found = run(
        """
        from gateway.client.cli import main

        print(json.dumps({"top": sorted(main.commands), "helps": helps(main)}))
        """,
        tmp_path,
    )
    assert set(found["top"]) == CLIENT_COMMANDS  # type: ignore[arg-type]
    helps: dict[str, list[object]] = found["helps"]  # type: ignore[assignment]
    assert {"audit verify", "audit export", "profile set"} <= set(helps)
    for path, (code, first) in helps.items():
        assert code == 0 and str(first).startswith(f"Usage: gateway {path} "), (path, code, first)


def test_client_commands_run_without_the_server(tmp_path: Path) -> None:
    found = run(
        """
        import os
        from gateway.cli import main

        age = CliRunner().invoke(main, ["keygen", "--type", "age", "--no-register", "-o", "id"])
        sign = CliRunner().invoke(main, ["keygen", "--type", "signing", "--no-register", "-o", "k"])
        env = {"GATEWAY_URL": "http://127.0.0.1:9", "GATEWAY_TOKEN": "gw_x"}
        down = CliRunner(env=env).invoke(main, ["artifacts"])
        print(json.dumps({
            "age": [age.exit_code, age.output],
            "sign": [sign.exit_code, sign.output],
            "down": [down.exit_code, down.output],
            "id": open("id").read(),
        }))
        """,
        tmp_path,
    )
    age, sign, down = found["age"], found["sign"], found["down"]
    assert age[0] == 0 and str(age[1]).startswith("age1"), age  # type: ignore[index]
    assert "AGE-SECRET-KEY-1" in str(found["id"])
    assert sign[0] == 0, sign  # type: ignore[index]
    assert down[0] == 1 and str(down[1]).startswith(  # type: ignore[index]
        "gateway: error: cannot reach the gateway at http://127.0.0.1:9"
    ), down


def test_the_gateway_command_without_the_server_names_the_extra(tmp_path: Path) -> None:
    found = run(
        """
        from gateway.cli import main

        answers = {}
        for args in (["init"], ["admin", "token", "create", "--org", "o", "--role", "lab",
                               "--name", "n"], ["serve"], ["audit", "publish"]):
            done = CliRunner().invoke(main, args)
            answers[" ".join(args[:3])] = [done.exit_code, done.output]
        print(json.dumps({"top": sorted(main.commands), "helps": helps(main), "runs": answers}))
        """,
        tmp_path,
    )
    assert set(found["top"]) == CLIENT_COMMANDS | OPERATOR_COMMANDS  # type: ignore[arg-type]
    helps: dict[str, list[object]] = found["helps"]  # type: ignore[assignment]
    for path, (code, first) in helps.items():
        assert code == 0 and str(first).startswith(f"Usage: gateway {path} "), (path, code, first)
    assert {"audit publish", "audit anchors", "admin token create"} <= set(helps)
    runs: dict[str, list[object]] = found["runs"]  # type: ignore[assignment]
    for command, (code, output) in runs.items():
        assert code == 1, (command, output)
        assert output == (
            f"gateway: error: `gateway {command}` needs the server install: "
            "pip install 'model-artifact-gateway[server]'\n"
        ), (command, output)
