"""A transfer cut by a real ``gateway serve``: the connection ends early, the cut is logged.

Through gunicorn, the cut shuts the connection down: the client sees fewer bytes than the
``Content-Length`` and the end of the stream. ``HEAD`` through gunicorn sends no body and
no ``Content-Length`` before the key's release.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from nacl.signing import SigningKey
from pyrage import x25519

from tests import helpers
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20
WINDOW = MIB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, {"GATEWAY_ACCESS_RECHECK_BYTES": str(WINDOW)})
    yield s
    stop_server(s)


def shared(server: Server, size: int) -> tuple[str, str]:
    """An artifact of ``size`` plaintext bytes shared with eve, and her grant on it."""
    lab, eve = requests.Session(), requests.Session()
    lab.headers.update(server.auth("lab"))
    eve.headers.update(server.auth("eval"))
    key = SigningKey.generate()
    me = lab.get(server.url + "/v1/me").json()
    assert lab.put(server.url + "/v1/me/signing-key", json=helpers.key_registration(key, me)).ok
    recipient = str(x25519.Identity.generate().to_public())
    assert eve.put(server.url + "/v1/me/recipient", json={"recipient": recipient}).ok
    up = lab.post(
        server.url + "/v1/uploads",
        json={"name": "m", "kind": "weights", "share_with": ["agency-a"]},
    ).json()
    plaintext = helpers.random_bytes(size, seed=size)
    data = helpers.age_file(up["recipient"], plaintext)
    for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
        r = lab.put(
            f"{server.url}/v1/uploads/{up['id']}/parts/{n}",
            data=part,
            headers={"X-Content-SHA256": helpers.sha(part)},
        )
        assert r.status_code == 200, r.text
    m = helpers.manifest(up, data, plaintext)
    artifact = lab.post(
        f"{server.url}/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, key)},
    ).json()
    req = eve.post(
        f"{server.url}/v1/artifacts/{artifact['id']}/access-requests", json={"justification": "x"}
    ).json()
    grant = lab.post(f"{server.url}/v1/access-requests/{req['id']}/approve", json={}).json()
    return artifact["id"], grant["id"]


def test_a_revocation_ends_a_served_download_early_and_logs_the_cut(server: Server) -> None:
    artifact, grant = shared(server, 40 * MIB)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.socket() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # little kept in flight
        raw.settimeout(20)
        raw.connect(("127.0.0.1", port))
        raw.sendall(
            f"GET /v1/artifacts/{artifact}/content HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.tokens['eval']}\r\n\r\n".encode()
        )
        got = b""
        while b"\r\n\r\n" not in got:
            got += raw.recv(65536)
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        received = len(body)
        while received < 2 * MIB:
            received += len(raw.recv(65536))
        revoked = requests.delete(
            f"{server.url}/v1/grants/{grant}", headers=server.auth("lab"), timeout=10
        )
        assert revoked.status_code == 204
        at_revoke, started = received, time.monotonic()
        while chunk := raw.recv(65536):
            received += len(chunk)
    assert received < length
    # Whatever the kernel buffers held, plus at most one window and one chunk.
    assert received - at_revoke < 12 * MIB
    assert time.monotonic() - started < 15
    entries = requests.get(
        server.url + "/v1/audit/entries",
        params={"action": "content.cut"},
        headers=server.auth("auditor"),
        timeout=10,
    ).json()["items"]
    assert [e["entry"]["details"]["reason"] for e in entries] == ["grant revoked"]
    assert "transfer cut" in (server.root / "server.log").read_text()


def test_head_through_gunicorn_before_the_release_has_no_length(server: Server) -> None:
    artifact, _ = shared(server, 1024)
    r = requests.head(
        f"{server.url}/v1/artifacts/{artifact}/content", headers=server.auth("eval"), timeout=10
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-Key-Released"] == "false" and "Content-Length" not in r.headers
    assert "Transfer-Encoding" not in r.headers
