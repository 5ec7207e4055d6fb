"""Download URLs: the grantee's header plus a short-lived URL of the stored object."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlparse

from flask.testing import FlaskClient

from gateway import metrics
from gateway.clock import FrozenClock
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, approve, denials, entries


def path_of(url: str) -> str:
    u = urlparse(url)
    return f"{u.path}?{u.query}"


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z"))


def fetch(evaluator: Evaluator, issued: dict, *, status: int, range_: str | None = None) -> bytes:
    """The body behind an issued URL, fetched without a bearer token; ``status`` is the answer expected."""
    r = evaluator.client.get(path_of(issued["url"]), headers={"Range": range_} if range_ else {})
    assert r.status_code == status, r.get_json()
    return r.data


def test_url_and_header_give_the_plaintext(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals, clock: FrozenClock
) -> None:
    r = evaluator.url(shared.artifact)
    assert r.status_code == 201
    issued = r.get_json()
    assert when(issued["expires_at"]) == clock.now() + timedelta(minutes=15)
    header = base64.b64decode(issued["header"])
    stored = fetch(evaluator, issued, status=200)  # no bearer token: the URL is the credential
    assert evaluator.decrypt(header + stored[issued["payload_offset"] :]) == shared.plaintext
    assert fetch(evaluator, issued, status=206, range_="bytes=100-199") == stored[100:200]
    # The same header as the content route: one release per grant.
    assert evaluator.content(shared.artifact).data.startswith(header)
    assert len(entries(evaluator.client, principals, action="key.release")) == 1
    issue = entries(evaluator.client, principals, action="url.issue")
    assert (
        len(issue) == 1 and issue[0]["grant"] == granted["id"] and "url" not in issue[0]["details"]
    )
    via = [
        e["details"]["via"]
        for e in entries(evaluator.client, principals, action="content.download")
    ]
    assert via == ["url", "url", "gateway"]


def test_url_never_outlives_the_grant(
    lab: Lab, evaluator: Evaluator, shared: Shared, clock: FrozenClock
) -> None:
    grant = approve(lab, evaluator.request(shared.artifact, duration_hours=1)["id"]).get_json()
    clock.advance(minutes=55)
    issued = evaluator.url(shared.artifact).get_json()
    assert issued["expires_at"] == grant["not_after"]


def refusals(reason: str) -> float:
    """How many signed-URL refusals for ``reason`` the metrics have counted."""
    value = metrics.REGISTRY.get_sample_value(
        "gateway_signed_url_refusals_total", {"reason": reason}
    )
    return value or 0.0


def test_expired_tampered_and_revoked_urls_are_refused(
    client: FlaskClient,
    principals: Principals,
    lab: Lab,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    clock: FrozenClock,
) -> None:
    before = {r: refusals(r) for r in ("url expired", "grant revoked")}
    issued = evaluator.url(shared.artifact).get_json()
    u = urlparse(issued["url"])
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    for changed in (
        {"sig": q["sig"][:-2] + ("AA" if q["sig"][-2:] != "AA" else "BB")},
        {"expires": str(int(q["expires"]) + 3600)},
        {"grant": "grt_other"},
        {"sig": ""},
        # the same number, not in ASCII decimal digits: never parsed as it
        *({"expires": form} for form in ("+" + q["expires"], " " + q["expires"])),
        {"expires": q["expires"].translate(str.maketrans("0123456789", "０１２３４５６７８９"))},
        {"expires": ""},
    ):
        r = client.get(f"{u.path}?{urlencode({**q, **changed})}")
        assert r.status_code == 403, changed
    other = f"/download/art_other?{u.query}"
    assert client.get(other).status_code == 403
    clock.advance(minutes=15)
    assert client.get(path_of(issued["url"])).status_code == 403
    assert refusals("url expired") == before["url expired"] + 1
    assert denials(client, principals, "url expired") == []  # the holder is anonymous: counted
    fresh = evaluator.url(shared.artifact).get_json()
    assert client.delete(f"/v1/grants/{granted['id']}", headers=lab.auth).status_code == 204
    assert client.get(path_of(fresh["url"])).status_code == 403
    assert refusals("grant revoked") == before["grant revoked"] + 1
    assert denials(client, principals, "grant revoked") == []


def test_url_range_past_end(
    client: FlaskClient, evaluator: Evaluator, shared: Shared, granted: dict
) -> None:
    issued = evaluator.url(shared.artifact).get_json()
    r = client.get(path_of(issued["url"]), headers={"Range": f"bytes={shared.artifact['size']}-"})
    assert (
        r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{shared.artifact['size']}"
    )


def test_no_grant_no_url(evaluator: Evaluator, shared: Shared, principals: Principals) -> None:
    assert evaluator.url(shared.artifact).status_code == 403
    assert entries(evaluator.client, principals, action="url.issue") == []
