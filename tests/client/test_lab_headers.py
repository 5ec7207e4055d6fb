"""A lab-custody approval wraps the file key only from the header this lab pushed for the artifact.

A gateway that served another artifact's header for the approval would have the lab hand
that artifact's key to the evaluator; the lab's client holds the served header to the one
it recorded when it pushed (or to the SHA-256 the lab gives), and sends nothing otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway import age
from gateway.audit import merkle, note
from gateway.audit.leaf import encode_leaf
from gateway.client import agehdr, labapprove, trust
from gateway.client.errors import ClientError

GW = "http://gw"


class FakeGateway:
    """Serves one request's custody material, a log of one entry (the grantee registering
    ``recipient``, signed by a real note key) and records what is posted."""

    url = GW

    def __init__(self, artifact: str, header: bytes, recipient: str) -> None:
        self.material = {
            "request": "req_1",
            "artifact": artifact,
            "grantee": "prn_eve",
            "grantee_name": "eve",
            "org": "agency-a",
            "recipient": recipient,
            "header": base64.b64encode(header).decode(),
        }
        self.posted: list[dict[str, Any]] = []
        self.signer = note.Signer.generate("test.gateway/audit")
        self.leaf = encode_leaf(
            index=0,
            time=datetime(2026, 1, 1, tzinfo=UTC),
            actor="prn_eve",
            org="agency-a",
            role="evaluator",
            action="identity.recipient.set",
            artifact=None,
            grant=None,
            subject_org="agency-a",
            outcome="ok",
            request_id=None,
            ip=None,
            details={"principal": "prn_eve", "name": "eve", "old": None, "new": recipient},
            prev={"agency-a": None},
        )

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        if path == "/v1/audit/entries":
            assert params["actor"] == "prn_eve" and params["size"] == 1
            leaf = base64.b64encode(self.leaf).decode()
            return {"items": [{"index": 0, "leaf": leaf, "proof": []}], "next_cursor": None}
        assert path == "/v1/access-requests/req_1/custody"
        return self.material

    def items(self, path: str, **params: Any) -> Any:
        return iter(self.get(path, **params)["items"])

    def text(self, path: str) -> str:
        if path == "/v1/audit/key":
            return self.signer.verifier_key
        assert path == "/v1/audit/checkpoint"
        cp = note.Checkpoint("test.gateway/audit", 1, merkle.leaf_hash(self.leaf))
        return note.sign_note(note.format_checkpoint(cp), self.signer)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posted.append(body)
        return {"id": "grt_1"}


def header_for(identity: age.X25519Identity) -> bytes:
    return agehdr.new_header(os.urandom(16), [str(identity.to_recipient())])


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    lab = age.X25519Identity.generate()
    key_file = tmp_path / "lab.agekey"
    key_file.write_text(str(lab) + "\n")
    evaluator = age.X25519Identity.generate()
    return {"lab": lab, "key": key_file, "recipient": str(evaluator.to_recipient())}


def test_the_header_pushed_from_this_machine_is_approved(setup: dict[str, Any]) -> None:
    pushed = header_for(setup["lab"])
    trust.record_lab_header(GW, "art_a", pushed)
    gw = FakeGateway("art_a", pushed, setup["recipient"])
    approved = labapprove.approve_lab(
        gw,  # type: ignore[arg-type]
        "req_1",
        setup["key"],
        {},
        expect_recipient=setup["recipient"],
    )
    assert approved == {"id": "grt_1"}
    assert len(gw.posted) == 1


def test_another_artifacts_header_served_for_the_approval_is_refused(
    setup: dict[str, Any],
) -> None:
    """Both open with the lab's identity; only the one pushed for art_a may be re-wrapped."""
    trust.record_lab_header(GW, "art_a", header_for(setup["lab"]))
    other = header_for(setup["lab"])  # artifact B's, also the lab's
    gw = FakeGateway("art_a", other, setup["recipient"])
    with pytest.raises(ClientError, match="not the one pushed for it"):
        labapprove.approve_lab(gw, "req_1", setup["key"], {}, expect_recipient=setup["recipient"])  # type: ignore[arg-type]
    assert gw.posted == []


def test_an_artifact_this_machine_did_not_push_needs_the_headers_digest(
    setup: dict[str, Any],
) -> None:
    pushed = header_for(setup["lab"])
    gw = FakeGateway("art_a", pushed, setup["recipient"])
    with pytest.raises(ClientError, match="did not push artifact art_a") as refused:
        labapprove.approve_lab(gw, "req_1", setup["key"], {}, expect_recipient=setup["recipient"])  # type: ignore[arg-type]
    assert refused.value.hint is not None and "--header-sha256" in refused.value.hint
    assert gw.posted == []
    digest = hashlib.sha256(pushed).hexdigest()
    approved = labapprove.approve_lab(
        gw, "req_1", setup["key"], {}, expect_recipient=setup["recipient"], header_sha256=digest
    )  # type: ignore[arg-type]
    assert approved == {"id": "grt_1"}
    with pytest.raises(ClientError, match="not the one pushed"):
        labapprove.approve_lab(
            gw,
            "req_1",
            setup["key"],
            {},
            expect_recipient=setup["recipient"],
            header_sha256="0" * 64,
        )  # type: ignore[arg-type]


class Terminal(io.StringIO):
    """What the lab types at a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "approved"), [("y\n", True), ("n\n", False), ("\n", False)])
def test_a_first_use_at_a_terminal_is_approved_only_if_the_lab_says_yes(
    setup: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    approved: bool,
) -> None:
    pushed = header_for(setup["lab"])
    trust.record_lab_header(GW, "art_a", pushed)
    gw = FakeGateway("art_a", pushed, setup["recipient"])
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    if approved:
        assert labapprove.approve_lab(gw, "req_1", setup["key"], {}) == {"id": "grt_1"}  # type: ignore[arg-type]
    else:
        with pytest.raises(ClientError, match="not confirmed"):
            labapprove.approve_lab(gw, "req_1", setup["key"], {})  # type: ignore[arg-type]
    shown = capsys.readouterr().err
    assert "organisation: agency-a" in shown and "evaluator:    eve (prn_eve)" in shown
    assert f"recipient:    {setup['recipient']}" in shown
    assert len(gw.posted) == int(approved)
