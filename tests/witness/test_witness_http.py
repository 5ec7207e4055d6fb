"""The witness as a real process, driven over HTTP (c2sp.org/tlog-witness "add-checkpoint").

The first test replays the add-checkpoint conformance sequence of FiloSottile/torchwood
(``cmd/litewitness/testdata/litewitness.txt``, ``add-checkpoint.hurl``, at
341dc2f0f552a29816955d4834718cd741f1ca64), which FiloSottile/sunlight reuses in
``internal/witness/witness_test.go`` (ed0bc38779aeb73c99cee6ab0c294a6ce9a2d9ba). Its unknown-log
case expects 403 there; the current spec says 404, as sunlight now answers.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import requests

from gateway.audit import merkle, note, trust
from gateway.audit.witness import (
    Conflict,
    WitnessClient,
    add_cosignatures,
    cosign,
    format_add_checkpoint,
    origin_hash,
    parse_cosignatures,
)
from tests.witness.conftest import TestLog, WitnessProcess, start_witness

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SIGSUM = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562"
SIGSUM_VKEY = f"{SIGSUM}+5202289b+Af/cLU2Y5BJNP+r3iMDC+av9eWCD0fBJVDfzAux5zxAP"
CP1 = f"{SIGSUM}\n1\nKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— {SIGSUM} UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQilegKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY=\n"
CP3 = f"{SIGSUM}\n3\nRcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=\n\n— {SIGSUM} UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go=\n"
CP3_BAD_SIG = CP3.replace("6go=\n", "6gx=\n")
CP3_OTHER_LOG = CP3.replace("e562", "e563")
CP5 = f"{SIGSUM}\n5\nQrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=\n\n— {SIGSUM} UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzRns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww=\n"
P13 = "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nKgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
P13_WRONG = (
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nKgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABA=\n"
)
P15 = "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=\nKgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
P35 = "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nKgMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nwgiIFdZfYNv6WU1OllBKsWnLYIS/DBMqt8Uh/S4OukE=\nKgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
HURL = [  # (request body, status, body check)
    (f"old 0\n\n{CP1}", 200, "— witness.test/w1 "),
    (f"old 1\n{P13}\n{CP3_BAD_SIG}", 403, "invalid signature"),
    (f"old 1\n{P13}\n{CP3_OTHER_LOG}", 404, "unknown log"),
    (f"old 1\n\n{CP3}", 422, "consistency proof"),
    (f"old 1\n{P13_WRONG}\n{CP3}", 422, "consistency proof"),
    (f"old 1\n{P13}\n{CP3}", 200, "— witness.test/w1 "),
    (f"old 1\n{P15}\n{CP5}", 409, "3\n"),
    (f"old 3\n{P35}\n{CP5}", 200, "— witness.test/w1 "),
    (f"old 0\n\n{CP5}", 409, "5\n"),
    (f"old 5\n\n{SIGSUM}\n5\nQrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=\n", 400, "no signature"),
]  # fmt: skip


def test_the_litewitness_conformance_sequence(tmp_path: Path) -> None:
    w = start_witness(tmp_path, [SIGSUM_VKEY])
    try:
        for i, (body, status, want) in enumerate(HURL):
            r = w.post(body)
            assert (i, r.status_code) == (i, status), r.text
            assert want in r.text, (i, r.text)
            if status == 409:
                assert r.headers["Content-Type"] == "text/x.tlog.size"
                assert r.text == want
            if status == 200:
                assert r.text.count("\n") == 2 and all(
                    line.startswith("— witness.test/w1 ") for line in r.text.splitlines()
                )
                parse_cosignatures(body.split("\n\n", 1)[1], r.content, w.keys)
        served = requests.get(f"{w.url}/{origin_hash(SIGSUM)}/checkpoint", timeout=10)
        assert served.status_code == 200
        assert served.text.startswith(CP5.split("\n\n")[0] + "\n\n" + CP5.split("\n\n")[1])
        assert note.open_checkpoint(served.text, [SIGSUM_VKEY]).size == 5
        assert note.open_checkpoint(served.text, w.keys).size == 5
    finally:
        w.stop()


def test_first_checkpoint_growth_and_monitoring(witness: WitnessProcess, test_log: TestLog) -> None:
    client = WitnessClient(witness.url, witness.keys)
    monitor = f"{witness.url}/{hashlib.sha256(test_log.origin.encode()).hexdigest()}/checkpoint"
    assert requests.get(monitor, timeout=10).status_code == 404
    assert client.checkpoint(test_log.origin) is None
    test_log.grow(5)
    first = test_log.checkpoint()
    cosigs = client.add_checkpoint(0, [], first)
    assert not isinstance(cosigs, Conflict)
    assert sorted(c.sig_type for c in cosigs) == [0x04, 0x06]
    test_log.grow(300)
    grown = test_log.checkpoint()
    cosigs = client.add_checkpoint(5, test_log.proof(5), grown)
    assert not isinstance(cosigs, Conflict)
    served = requests.get(monitor, timeout=10)
    assert served.status_code == 200 and served.headers["Cache-Control"] == "no-cache"
    assert served.text == add_cosignatures(grown, cosigs)
    policy = trust.parse_policy(
        f"log {test_log.vkey}\n"
        + "".join(f"witness w-{k.sig_type} {k.vkey}\n" for k in witness.keys)
        + "group w1 all w-4 w-6\nquorum w1\n"
    )
    assert trust.verify_checkpoint(served.text, policy).checkpoint.size == 305


def test_a_stale_old_size_gets_409_with_the_witness_size(
    witness: WitnessProcess, test_log: TestLog
) -> None:
    test_log.grow(10)
    assert witness.post(format_add_checkpoint(0, [], test_log.checkpoint())).status_code == 200
    test_log.grow(10)
    r = witness.post(format_add_checkpoint(3, test_log.proof(3), test_log.checkpoint()))
    assert (r.status_code, r.headers["Content-Type"], r.content) == (
        409,
        "text/x.tlog.size",
        b"10\n",
    )
    # The client library retries from the size the 409 names.
    client = WitnessClient(witness.url, witness.keys)
    before, cosigs = cosign(client, 3, test_log.proof, test_log.checkpoint())
    assert before == 10 and len(cosigs) == 2


def test_inconsistent_or_invalid_submissions_are_refused(
    witness: WitnessProcess, test_log: TestLog
) -> None:
    test_log.grow(8)
    assert witness.post(format_add_checkpoint(0, [], test_log.checkpoint())).status_code == 200
    test_log.grow(4)
    good_proof, cp = test_log.proof(8), test_log.checkpoint()
    bad_proof = [good_proof[0], merkle.leaf_hash(b"x")] + good_proof[2:]
    forked = TestLog()
    forked.grow(8, tag="forked")
    fork8 = forked.checkpoint()
    cases = [
        (format_add_checkpoint(8, bad_proof, cp), 422),
        (format_add_checkpoint(8, [], cp), 422),
        (format_add_checkpoint(8, good_proof, test_log.checkpoint(8)), 422),  # equal sizes need an empty proof
        (format_add_checkpoint(8, [], fork8), 409),  # equal sizes, another root: a fork
        (format_add_checkpoint(12, [], cp), 409),
        (format_add_checkpoint(13, [], cp), 400),
        (b"old 08\n\n" + cp.encode(), 400),
        (b"old 8\nnot-base64\n\n" + cp.encode(), 400),
        (b"old 8\n" + b"\n".join([b"A" * 43 + b"="] * 64) + b"\n\n" + cp.encode(), 400),
        (format_add_checkpoint(8, good_proof, cp.replace("\n12\n", "\n13\n")), 403),
        (format_add_checkpoint(8, good_proof, note.sign_note(cp.split("\n\n")[0] + "\next\n", test_log.signer)), 400),
        (format_add_checkpoint(0, [], note.sign_checkpoint(note.Checkpoint(test_log.origin, 0, merkle.leaf_hash(b"")), test_log.signer)), 422),
    ]  # fmt: skip
    for i, (body, status) in enumerate(cases):
        r = witness.post(body)
        assert (i, r.status_code) == (i, status), r.text
        assert r.headers["Content-Type"].startswith("text/")
        if status == 409:  # the one 409 body tlog-witness defines: the witness's size
            assert (r.headers["Content-Type"], r.content) == ("text/x.tlog.size", b"8\n")
    assert witness.post(format_add_checkpoint(8, good_proof, cp)).status_code == 200


def test_restart_keeps_the_state(witness: WitnessProcess, test_log: TestLog) -> None:
    test_log.grow(3)
    assert witness.post(format_add_checkpoint(0, [], test_log.checkpoint())).status_code == 200
    monitor = f"{witness.url}/{origin_hash(test_log.origin)}/checkpoint"
    before = requests.get(monitor, timeout=10).text
    witness.stop()
    witness.start()
    assert requests.get(monitor, timeout=10).text == before
    test_log.grow(2)
    r = witness.post(format_add_checkpoint(0, [], test_log.checkpoint()))
    assert (r.status_code, r.text) == (409, "3\n")
    assert (
        witness.post(format_add_checkpoint(3, test_log.proof(3), test_log.checkpoint())).status_code
        == 200
    )


def test_concurrent_submissions_serialise(witness: WitnessProcess, test_log: TestLog) -> None:
    """tlog-witness: checking the old size and persisting must be atomic (the rollback race)."""
    test_log.grow(4)
    assert witness.post(format_add_checkpoint(0, [], test_log.checkpoint())).status_code == 200
    sizes = list(range(5, 29))
    test_log.grow(sizes[-1] - 4)
    bodies = [format_add_checkpoint(4, test_log.proof(4, n), test_log.checkpoint(n)) for n in sizes]
    results: dict[int, requests.Response] = {}
    barrier = threading.Barrier(len(bodies))

    def submit(n: int, body: bytes) -> None:
        barrier.wait()
        results[n] = witness.post(body)

    threads = [threading.Thread(target=submit, args=a) for a in zip(sizes, bodies, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if r.status_code == 200]
    assert len(winners) == 1, {n: r.status_code for n, r in results.items()}
    assert {r.text for n, r in results.items() if n not in winners} == {f"{winners[0]}\n"}
    served = requests.get(f"{witness.url}/{origin_hash(test_log.origin)}/checkpoint", timeout=10)
    assert note.open_checkpoint(served.text, witness.keys).size == winners[0]


def test_http_limits_and_methods(witness: WitnessProcess) -> None:
    assert requests.get(witness.url + "/add-checkpoint", timeout=10).status_code == 405
    assert requests.post(witness.url + "/", timeout=10).status_code == 405
    assert requests.get(witness.url + "/" + "0" * 64 + "/checkpoint", timeout=10).status_code == 404
    assert requests.get(witness.url + "/nope", timeout=10).status_code == 404
    assert witness.post(b"x" * (256 * 1024 + 1)).status_code == 413
    home = requests.get(witness.url + "/", timeout=10).text
    assert "witness witness.test/w1" in home and all(k.vkey in home for k in witness.keys)
