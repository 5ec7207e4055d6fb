"""A real gateway app on a free port of 127.0.0.1, served from a thread, and the CLI against it.

:class:`Live` runs the gateway's own app (``create_app``) behind Werkzeug's threaded
server, with the seeded principals of ``tests/conftest.py``, so the client commands meet
the real API: its routes, its policy, its problems. Each test gets its own directory, its
own client configuration directory (known keys, push state, profiles) and its own log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from nacl.signing import SigningKey
from werkzeug.serving import make_server

from gateway.cli import main
from gateway.runtime import Runtime
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals

CLIENT_VARIABLES = ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_PROFILE", "GATEWAY_CONFIG")


@dataclass
class Live:
    """The app served at ``url``; ``gateway`` runs the CLI as one of the seeded principals."""

    url: str
    app: Flask
    rt: Runtime
    principals: Principals
    home: Path
    lab_key: SigningKey
    defaults: dict[str, str] = field(default_factory=dict)

    def env(self, who: str) -> dict[str, str]:
        return {"GATEWAY_URL": self.url, "GATEWAY_TOKEN": self.principals.tokens[who]}

    def gateway(
        self, who: str | None, *args: str, input: str | bytes | None = None, **env: str
    ) -> Result:
        """``gateway ARGS`` as ``who`` (None: no gateway in the environment)."""
        given: dict[str, str | None] = {name: None for name in CLIENT_VARIABLES}
        given["XDG_CONFIG_HOME"] = str(self.home)
        if who is not None:
            given.update(self.env(who))
        given.update(env)
        return CliRunner().invoke(main, list(args), input=input, env=given, catch_exceptions=False)

    @property
    def lab(self) -> Lab:
        return Lab(self.app.test_client(), self.principals, self.lab_key)

    def push(self, plaintext: bytes = b"weights", **body: Any) -> dict[str, Any]:
        """An artifact of lab-a, shared with agency-a, made through the API."""
        return self.lab.push(plaintext, **body)

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        """One API call as ``who`` through the app; its JSON."""
        r = self.app.test_client().open(
            path, method=method, headers=self.principals.auth(who), **kwargs
        )
        assert r.status_code < 300, (r.status_code, r.get_json())
        return r.get_json()

    def grant(self, artifact: str, evaluator: str = "eval", **request: Any) -> dict[str, Any]:
        """A request by ``evaluator`` on ``artifact``, approved by the lab; the grant."""
        made = self.call(
            evaluator,
            "POST",
            f"/v1/artifacts/{artifact}/access-requests",
            json={"justification": "testing", **request},
        )
        return dict(self.call("lab", "POST", f"/v1/access-requests/{made['id']}/approve", json={}))


@pytest.fixture
def live(app: Flask, rt: Runtime, principals: Principals, tmp_path: Path) -> Iterator[Live]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    key = SigningKey.generate()
    client = app.test_client()
    r = client.put(
        "/v1/me/signing-key",
        json={"public_key": helpers.public_b64(key)},
        headers=principals.auth("lab"),
    )
    assert r.status_code == 200, r.get_json()
    try:
        yield Live(
            url=f"http://127.0.0.1:{server.server_port}",
            app=app,
            rt=rt,
            principals=principals,
            home=tmp_path / "client-config",
            lab_key=key,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def actions(rt: Runtime) -> list[str]:
    """The actions of the audit log, in order."""
    import json

    from gateway.audit import store

    with rt.db.session() as session:
        return [json.loads(leaf)["action"] for _, leaf in store.iter_leaves(session)]


@pytest.fixture
def evaluator_key(live: Live, tmp_path: Path) -> Path:
    """eval's age identity, made and registered with ``gateway keygen``."""
    path = tmp_path / "eval.agekey"
    done = live.gateway("eval", "keygen", "-o", str(path))
    assert done.exit_code == 0, done.output
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: a real file system that fills up (mounting one needs root)."""
    import shutil
    import subprocess

    mount = shutil.which("mount")
    point = tmp_path / "small-disk"
    point.mkdir()
    done = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if mount and os.geteuid() == 0
        else None
    )
    if done is None or done.returncode != 0:
        pytest.skip("a small file system needs root to mount a tmpfs")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
