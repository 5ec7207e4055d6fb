"""``HEAD`` on content answers the headers a GET would, releases no key and logs no download."""

from __future__ import annotations

from urllib.parse import urlparse

from flask.testing import FlaskClient

from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, denials, entries


def head(evaluator: Evaluator, shared: Shared, range_: str | None = None) -> object:
    extra = {"Range": range_} if range_ else {}
    return evaluator.client.head(
        f"/v1/artifacts/{shared.artifact['id']}/content", headers={**evaluator.auth, **extra}
    )


def test_head_before_the_key_release_releases_nothing_and_says_so(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    r = head(evaluator, shared)
    assert r.status_code == 200 and r.data == b""
    assert r.headers["X-Key-Released"] == "false"
    assert "Content-Length" not in r.headers  # the header it would count is not made yet
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["ETag"]
    assert entries(evaluator.client, principals, action="key.release") == []
    assert entries(evaluator.client, principals, action="content.download") == []
    got = evaluator.content(shared.artifact)  # the GET then releases and sends
    assert got.headers["ETag"] == r.headers["ETag"]
    assert len(entries(evaluator.client, principals, action="key.release")) == 1


def test_head_after_the_release_answers_what_a_get_would(
    evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    whole = evaluator.content(shared.artifact)
    r = head(evaluator, shared)
    assert r.status_code == 200 and r.data == b""
    assert r.headers["X-Key-Released"] == "true"
    for name in ("Content-Length", "Accept-Ranges", "ETag"):
        assert r.headers[name] == whole.headers[name], name
    part = head(evaluator, shared, "bytes=10-19")
    assert part.status_code == 206 and part.headers["Content-Range"] == (
        f"bytes 10-19/{len(whole.data)}"
    )
    assert part.headers["Content-Length"] == "10"
    downloads = entries(evaluator.client, principals, action="content.download")
    assert len(downloads) == 1  # only the one of the GET


def test_head_without_a_grant_is_refused_like_a_get(
    evaluator: Evaluator, shared: Shared, principals: Principals
) -> None:
    r = head(evaluator, shared)
    assert r.status_code == 403
    assert len(denials(evaluator.client, principals, "no grant")) == 1


def test_head_on_a_signed_url_logs_no_download(
    client: FlaskClient, evaluator: Evaluator, shared: Shared, granted: dict, principals: Principals
) -> None:
    issued = evaluator.url(shared.artifact).get_json()
    u = urlparse(issued["url"])
    r = client.head(f"{u.path}?{u.query}")
    assert r.status_code == 200 and r.data == b""
    assert r.headers["Content-Length"] == str(shared.artifact["size"])
    assert entries(client, principals, action="content.download") == []
    assert client.get(f"{u.path}?{u.query}").status_code == 200
    assert len(entries(client, principals, action="content.download")) == 1
