"""Key release and content: the evaluator's own age file, resumable, every access logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from pyrage import x25519

from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.models import Grant
from gateway.runtime import Runtime
from tests import helpers
from tests.api.conftest import Lab
from tests.conftest import Principals, make_config
from tests.services.conftest import Evaluator, Shared, approve, denials, entries, evaluator_for

WINDOW_DAYS = 10


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A review window shorter than the seeded tokens' 30 days, so its end can be reached."""
    return make_config(tmp_path, **{"access.review_window_days": WINDOW_DAYS})


def test_download_decrypts_to_the_labs_plaintext(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals, rt: Runtime
) -> None:
    r = evaluator.content(shared.artifact)
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    assert int(r.headers["Content-Length"]) == len(r.data)
    assert r.headers["Accept-Ranges"] == "bytes"
    assert evaluator.decrypt(r.data) == shared.plaintext
    again = evaluator.content(shared.artifact)
    assert again.data == r.data  # the header is made once per grant
    releases = entries(evaluator.client, principals, action="key.release")
    assert [(e["grant"], e["details"]["recipient"]) for e in releases] == [
        (granted["id"], evaluator.recipient)
    ]
    downloads = entries(evaluator.client, principals, action="content.download")
    assert [e["details"]["range"] for e in downloads] == [[0, len(r.data) - 1]] * 2
    with rt.db.session() as session:
        stored = session.get(Grant, granted["id"])
        assert stored.header is not None and r.data.startswith(stored.header)
        assert stored.recipient == evaluator.recipient


def test_the_payload_is_the_labs_untouched(
    evaluator: Evaluator, shared: Shared, granted: dict, rt: Runtime
) -> None:
    body = evaluator.content(shared.artifact).data
    with rt.db.session() as session:
        header = session.get(Grant, granted["id"]).header
    stored = b"".join(rt.store.open_read(helpers.object_key(rt, shared.artifact["id"])))
    header_size = len(stored) - (len(body) - len(header))
    assert body[len(header) :] == stored[header_size:]
    assert header != stored[:header_size]  # a new header: the custody stanza is not passed on


def test_interrupted_download_resumes_byte_identical(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    whole = evaluator.content(shared.artifact).data
    first = evaluator.content(shared.artifact, "bytes=0-999")
    assert first.status_code == 206 and first.data == whole[:1000]
    assert first.headers["Content-Range"] == f"bytes 0-999/{len(whole)}"
    rest = evaluator.content(shared.artifact, "bytes=1000-")
    assert rest.status_code == 206 and first.data + rest.data == whole
    tail = evaluator.content(shared.artifact, "bytes=-10")
    assert tail.data == whole[-10:]
    inside_header = evaluator.content(shared.artifact, "bytes=5-20")
    assert inside_header.data == whole[5:21]
    ranges = [
        e["details"]["range"]
        for e in entries(evaluator.client, principals, action="content.download")
    ]
    assert ranges[1:] == [
        [0, 999],
        [1000, len(whole) - 1],
        [len(whole) - 10, len(whole) - 1],
        [5, 20],
    ]


def test_if_range_mismatch_sends_everything(
    evaluator: Evaluator, shared: Shared, granted: dict
) -> None:
    first = evaluator.content(shared.artifact, "bytes=0-9")
    same = evaluator.content(shared.artifact, "bytes=0-9", **{"If-Range": first.headers["ETag"]})
    assert same.status_code == 206
    other = evaluator.content(shared.artifact, "bytes=0-9", **{"If-Range": '"something-else"'})
    assert other.status_code == 200 and evaluator.decrypt(other.data) == shared.plaintext


def test_range_past_the_end_is_416(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    total = len(evaluator.content(shared.artifact).data)
    r = evaluator.content(shared.artifact, f"bytes={total}-")
    assert r.status_code == 416 and r.mimetype == "application/problem+json"
    assert r.headers["Content-Range"] == f"bytes */{total}"
    assert len(denials(evaluator.client, principals, "range past the end")) == 1


def test_no_recipient_is_409(
    client: FlaskClient, principals: Principals, lab: Lab, shared: Shared
) -> None:
    fresh = evaluator_for(client, principals, "eval2")  # never registered a recipient
    req = fresh.request(shared.artifact)
    assert approve(lab, req["id"]).status_code == 201
    r = fresh.content(shared.artifact)
    assert r.status_code == 409 and "recipient" in r.get_json()["detail"]
    assert len(denials(client, principals, "no recipient")) == 1
    assert entries(client, principals, action="key.release") == []


def test_header_is_for_the_grantee_only(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    shared: Shared,
    evaluator: Evaluator,
    granted: dict,
) -> None:
    colleague = evaluator_for(client, principals, "eval2")  # same agency, no grant
    colleague.register()
    assert colleague.content(shared.artifact).status_code == 403
    body = evaluator.content(shared.artifact).data
    with pytest.raises(Exception):  # noqa: B017 - pyrage raises its own DecryptError
        colleague.decrypt(body)


def test_recipient_changed_after_release_is_not_released_again(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    assert evaluator.content(shared.artifact).status_code == 200
    old = evaluator.identity
    evaluator.register(x25519.Identity.generate())
    r = evaluator.content(shared.artifact)
    assert r.status_code == 409 and r.get_json()["released_to"] == str(old.to_public())
    assert len(entries(evaluator.client, principals, action="key.release")) == 1
    assert len(denials(evaluator.client, principals, "recipient changed since key release")) == 1
    evaluator.register(old)  # the identity the key went to still works
    assert evaluator.decrypt(evaluator.content(shared.artifact).data) == shared.plaintext


def test_recipient_changed_before_release_gets_the_new_one(
    evaluator: Evaluator, shared: Shared, granted: dict
) -> None:
    evaluator.register(x25519.Identity.generate())
    assert evaluator.decrypt(evaluator.content(shared.artifact).data) == shared.plaintext


def test_credentials_follow_the_same_path(lab: Lab, evaluator: Evaluator) -> None:
    secret = b'{"endpoint": "https://api.example/v1", "key": "sk-test-123"}'
    artifact = lab.push(secret, name="endpoint-credential", kind="credential")
    assert artifact["kind"] == "credential"
    req = evaluator.request(artifact)
    assert approve(lab, req["id"]).status_code == 201
    assert evaluator.decrypt(evaluator.content(artifact).data) == secret


OTHERS = [
    ("lab", "lab-a", 403),
    ("auditor", "oversight", 403),
    ("admin", "operator", 403),
    ("lab_b", "lab-b", 404),
    ("eval_b", "agency-b", 404),
]


def test_nobody_else_gets_content_or_header(
    client: FlaskClient, principals: Principals, shared: Shared, granted: dict
) -> None:
    aid = shared.artifact["id"]
    for n, (who, org, status) in enumerate(OTHERS, start=1):
        assert (
            client.get(f"/v1/artifacts/{aid}/content", headers=principals.auth(who)).status_code
            == status
        ), who
        assert (
            client.post(
                f"/v1/artifacts/{aid}/download-url", headers=principals.auth(who)
            ).status_code
            == status
        )
        denied = entries(client, principals, action="auth.denied")
        # content and a download URL are both content.read: the second refusal within the
        # interval is counted as a repeat of the first, not recorded again
        assert len(denied) == n and denied[-1]["org"] == org
    assert entries(client, principals, action="key.release") == []


def test_state_refusals(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    shared: Shared,
    evaluator: Evaluator,
    clock: FrozenClock,
) -> None:
    def refused(status: int, reason: str) -> None:
        r = evaluator.content(shared.artifact)
        assert r.status_code == status, r.get_json()
        assert r.mimetype == "application/problem+json" and r.get_json()["detail"]
        assert len(denials(client, principals, reason)) >= 1, reason

    refused(403, "no grant")
    req = evaluator.request(shared.artifact, duration_hours=1)
    refused(403, "request pending")
    lab.client.post(f"/v1/access-requests/{req['id']}/deny", json={}, headers=lab.auth)
    refused(403, "request denied")
    clock.advance(seconds=1)
    grant = approve(lab, evaluator.request(shared.artifact)["id"]).get_json()
    assert evaluator.content(shared.artifact).status_code == 200
    assert client.delete(f"/v1/grants/{grant['id']}", headers=lab.auth).status_code == 204
    refused(403, "grant revoked")
    clock.advance(seconds=1)
    assert (
        approve(lab, evaluator.request(shared.artifact, duration_hours=1)["id"]).status_code == 201
    )
    clock.advance(hours=1)
    refused(403, "grant expired")
    clock.advance(days=WINDOW_DAYS)
    refused(410, "review window ended")
    assert entries(client, principals, action="content.download")[0]["grant"] == grant["id"]
    assert len(entries(client, principals, action="content.download")) == 1


def test_withdrawn_artifact_is_gone(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    shared: Shared,
    evaluator: Evaluator,
    granted: dict,
) -> None:
    assert (
        client.delete(f"/v1/artifacts/{shared.artifact['id']}", headers=lab.auth).status_code == 204
    )
    assert evaluator.content(shared.artifact).status_code == 410
    assert evaluator.url(shared.artifact).status_code == 410
    assert len(denials(client, principals, "artifact withdrawn")) == 1  # the URL's: a repeat


def test_content_is_streamed(evaluator: Evaluator, shared: Shared, granted: dict) -> None:
    r = evaluator.client.get(
        f"/v1/artifacts/{shared.artifact['id']}/content", headers=evaluator.auth, buffered=False
    )
    assert r.is_streamed
    assert evaluator.decrypt(b"".join(r.response)) == shared.plaintext
    r.close()


def test_an_access_that_cannot_be_logged_does_not_happen(
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError

    from gateway.audit import store

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT INTO audit", {}, Exception("disk full"))

    monkeypatch.setattr(store, "append", broken)
    for r in (evaluator.content(shared.artifact), evaluator.url(shared.artifact)):
        assert r.status_code == 503 and r.mimetype == "application/problem+json"
    with rt.db.session() as session:
        assert session.get(Grant, granted["id"]).header is None  # no key was released
    monkeypatch.undo()
    released = evaluator.content(shared.artifact)
    assert released.status_code == 200 and evaluator.decrypt(released.data) == shared.plaintext


def test_concurrent_first_downloads_release_once(
    app,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,  # noqa: ANN001
    principals: Principals,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gateway import age

    # Every request makes its header before any of them stores one: a real race.
    made_all = threading.Barrier(4)
    reheader = age.reheader

    def racing(*args: object) -> bytes:
        header = reheader(*args)  # type: ignore[arg-type]
        made_all.wait(timeout=20)
        return header

    monkeypatch.setattr(age, "reheader", racing)

    def fetch(_: int) -> bytes:
        r = app.test_client().get(
            f"/v1/artifacts/{shared.artifact['id']}/content", headers=evaluator.auth
        )
        assert r.status_code == 200, r.get_json()
        return bytes(r.data)

    with ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(fetch, range(4)))
    assert len(set(bodies)) == 1 and evaluator.decrypt(bodies[0]) == shared.plaintext
    assert len(entries(evaluator.client, principals, action="key.release")) == 1


def test_the_owning_lab_sees_the_accesses_to_its_artifact(
    client: FlaskClient, principals: Principals, evaluator: Evaluator, shared: Shared, granted: dict
) -> None:
    evaluator.content(shared.artifact, "bytes=0-99")
    outsider = evaluator_for(client, principals, "eval_b")
    outsider.content(shared.artifact)  # refused, and logged

    def actions(who: str) -> list[str]:
        r = client.get("/v1/audit/entries?limit=1000", headers=principals.auth(who))
        assert r.status_code == 200
        return [item["entry"]["action"] for item in r.get_json()["items"]]

    seen = actions("lab")
    for action in ("access.request", "access.approve", "key.release", "content.download"):
        assert action in seen, action
    assert not {"key.release", "content.download", "access.request"} & set(actions("lab_b"))
