"""A lab uploads a real `age`-encrypted, multi-part file to a real `gateway serve`."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from nacl.signing import SigningKey

from tests import helpers
from tests.e2e.conftest import Server, age_program

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20


def crash_midway(server: Server, upload_id: str, number: int, part: bytes) -> None:
    """Send half a part and hang up, as a client that crashed would."""
    u = urlparse(server.url)
    head = (
        f"PUT /v1/uploads/{upload_id}/parts/{number} HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"Authorization: Bearer {server.tokens['lab']}\r\nX-Content-SHA256: {helpers.sha(part)}\r\n"
        f"Content-Length: {len(part)}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(head + part[: len(part) // 2])


def test_real_age_file_uploaded_in_parts_resumed_and_read_back(
    server: Server, tmp_path: Path
) -> None:
    age = age_program()
    plaintext = helpers.random_bytes(13 * MIB + 4321, seed=7)
    (tmp_path / "weights.bin").write_bytes(plaintext)
    s = requests.Session()
    s.headers.update(server.auth("lab"))
    key = SigningKey.generate()
    me = s.get(server.url + "/v1/me").json()
    assert s.put(server.url + "/v1/me/signing-key", json=helpers.key_registration(key, me)).ok

    up = s.post(
        server.url + "/v1/uploads",
        json={"name": "weights.bin", "kind": "weights", "share_with": ["agency-a"]},
    ).json()
    subprocess.run(
        [
            age,
            "-r",
            up["recipient"],
            "-o",
            str(tmp_path / "weights.age"),
            str(tmp_path / "weights.bin"),
        ],
        check=True,
    )
    data = (tmp_path / "weights.age").read_bytes()
    parts = helpers.split(data, up["part_size"])
    assert len(parts) == 3

    def put(n: int) -> requests.Response:
        return s.put(
            f"{server.url}/v1/uploads/{up['id']}/parts/{n}",
            data=parts[n - 1],
            headers={"X-Content-SHA256": helpers.sha(parts[n - 1])},
        )

    assert put(1).status_code == 200
    assert put(1).status_code == 200  # sent twice: replaces
    crash_midway(server, up["id"], 2, parts[1])
    state = s.get(f"{server.url}/v1/uploads/{up['id']}").json()
    assert [p["number"] for p in state["parts"]] == [1]  # the crashed part left nothing
    missing = [
        n for n in range(1, len(parts) + 1) if n not in {p["number"] for p in state["parts"]}
    ]
    for n in missing:  # resume from what the server says it has
        assert put(n).status_code == 200

    m = helpers.manifest(up, data, plaintext)
    r = s.post(
        f"{server.url}/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, key)},
    )
    assert r.status_code == 201, r.text
    art = r.json()
    assert art["size"] == len(data)

    stored = server.root / "var" / "objects"
    files = [p for p in stored.rglob("*.age") if p.is_file()]
    assert len(files) == 1
    assert hashlib.sha256(files[0].read_bytes()).digest() == hashlib.sha256(data).digest()
    assert base64.b64decode(art["signature"]) == base64.b64decode(helpers.sign(m, key))


def test_parts_on_one_kept_alive_connection_and_pipelined(server: Server) -> None:
    """A part refused after its body was read and an accepted one share a connection; a request
    pipelined right behind a part's body is answered, not swallowed as body bytes."""
    s = requests.Session()
    s.headers.update(server.auth("lab"))
    up = s.post(
        server.url + "/v1/uploads",
        json={"name": "k", "kind": "weights", "share_with": ["agency-a"]},
    ).json()
    url = f"{server.url}/v1/uploads/{up['id']}/parts"
    good = helpers.random_bytes(3 * MIB + 17, seed=3)
    assert s.put(f"{url}/1", data=good, headers={"X-Content-SHA256": "0" * 64}).status_code == 400
    r = s.put(f"{url}/1", data=good, headers={"X-Content-SHA256": helpers.sha(good)})
    assert r.status_code == 200 and r.json()["sha256"] == helpers.sha(good)

    # Two requests in one write: a small part, then a GET on the same connection.
    small = b"pipelined part"
    u = urlparse(server.url)
    put = (
        f"PUT /v1/uploads/{up['id']}/parts/2 HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"Authorization: Bearer {server.tokens['lab']}\r\nX-Content-SHA256: {helpers.sha(small)}\r\n"
        f"Content-Length: {len(small)}\r\n\r\n"
    ).encode() + small
    get = (
        f"GET /v1/uploads/{up['id']} HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"Authorization: Bearer {server.tokens['lab']}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((u.hostname, u.port)) as sock:
        sock.sendall(put + get)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200") == 2, answer[:400]
    assert b'"number":2' in answer.replace(b" ", b"")
    state = s.get(f"{server.url}/v1/uploads/{up['id']}").json()
    assert [(p["number"], p["sha256"]) for p in state["parts"]] == [
        (1, helpers.sha(good)),
        (2, helpers.sha(small)),
    ]
