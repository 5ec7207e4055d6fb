"""Clients that stall or trickle cannot take the witness offline (its worker bounds every wait).

A real ``gateway witness serve`` with two threads and short limits; two clients each hold a
request open: one stops inside its head and sends nothing more (each read's timeout lets it
go), the other is inside its body and sends a byte now and then, so no single read ever
times out (the request's deadline lets it go). gunicorn's own gthread worker gives each of
them a thread for as long as they stay, and nobody else is answered.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.witness.conftest import TestLog, WitnessProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HEAD = b"POST /add-checkpoint HTTP/1.1\r\nHost: witness.test\r\nX-Slow: "
BODY = b"POST /add-checkpoint HTTP/1.1\r\nHost: witness.test\r\nContent-Length: 1000\r\n\r\nold 0\n"


@pytest.fixture
def small_witness(tmp_path: Path, test_log: TestLog) -> Iterator[WitnessProcess]:
    limits = ["--threads", "2", "--request-timeout", "2", "--io-timeout", "1"]
    w = WitnessProcess(tmp_path, "witness.test/w1", [test_log.vkey], options=limits)
    w.prepare()
    w.start()
    yield w
    w.stop()


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    """A byte every 0.3 s, well inside the 1 s read timeout, until stopped or cut off."""
    while not stop.wait(0.3):
        try:
            sock.sendall(b"a")
        except OSError:
            return


def _answer(sock: socket.socket) -> bytes:
    """Everything the witness sends until it closes the connection."""
    sock.settimeout(20)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_trickling_clients_are_cut_off_and_others_are_served(small_witness: WitnessProcess) -> None:
    stop = threading.Event()
    stalled = []
    for start in (HEAD, BODY):
        sock = socket.create_connection(("127.0.0.1", small_witness.port), timeout=5)
        sock.sendall(start)
        stalled.append(sock)
    threads = [threading.Thread(target=_trickle, args=(stalled[1], stop), daemon=True)]
    for t in threads:
        t.start()
    try:
        # Both threads are taken now; before the fix this waited as long as the trickling.
        home = requests.get(small_witness.url + "/", timeout=15)
        assert home.status_code == 200 and "witness witness.test/w1" in home.text
        head_answer, body_answer = (_answer(s) for s in stalled)
        assert body_answer.startswith(b"HTTP/1.1 408 ")  # then the connection is closed
        assert b"200" not in head_answer
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in stalled:
            s.close()
