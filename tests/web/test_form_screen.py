"""Form bodies are read only for a dashboard route that takes them, bounded, and url-encoded only.

The request screen reads a POST's form to check its fields; read for every path, an
anonymous client could make any worker hold a body of any size in memory (the API takes
large bodies on purpose, so the app sets no overall limit). The stream below counts what
the application reads of a body, which is what a client costs the gateway.
"""

from __future__ import annotations

import io
from typing import Any

from flask.testing import FlaskClient

from gateway.api import screen
from gateway.models import AccessRequest
from gateway.runtime import Runtime
from tests.web.conftest import Story, WebUser, csrf_of

FORM = "application/x-www-form-urlencoded"
BIG = 8 * 1024 * 1024


class Counted(io.RawIOBase):
    """``size`` bytes of a form field (``a=xxxx...``), counting how many were read."""

    def __init__(self, size: int) -> None:
        self.size, self.pos, self.read_bytes = size, 0, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body by seeking
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos += offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.size - self.pos))
        buffer[:n] = (b"a=" + b"x" * n)[:n] if self.pos == 0 else b"x" * n
        self.pos += n
        self.read_bytes += n
        return n


def post(client: FlaskClient, path: str, size: int = BIG, **headers: str) -> tuple[Any, int]:
    body = Counted(size)
    r = client.post(
        path,
        input_stream=body,
        headers={"Content-Type": FORM, "Content-Length": str(size), **headers},
    )
    return r, body.read_bytes


def _requests(rt: Runtime) -> int:
    with rt.db.session() as session:
        return session.query(AccessRequest).count()


def test_no_form_is_read_where_no_dashboard_route_takes_it(
    client: FlaskClient, story: Story
) -> None:
    art = story.artifact["id"]
    for path, status in (
        ("/v1/no-such-route", 404),  # the API parses no form at all
        (f"/v1/artifacts/{art}", 405),
        (f"/v1/artifacts/{art}/access-requests", 401),  # anonymous
        ("/ui/no-such-page", 404),
        (f"/ui/artifacts/{art}", 405),
    ):
        r, read = post(client, path)
        assert r.status_code == status, (path, r.status_code)
        assert read < BIG // 2, (path, read)


def test_a_dashboard_form_past_its_bound_is_refused_unread(
    rt: Runtime, web: dict[str, WebUser], story: Story
) -> None:
    art, before = story.artifact["id"], _requests(rt)
    r, read = post(web["eval"].client, f"/ui/artifacts/{art}/requests", screen.MAX_FORM + 1)
    assert r.status_code == 413 and r.mimetype == "text/html", r.status_code
    assert read == 0
    assert _requests(rt) == before


def test_a_dashboard_form_in_another_encoding_is_415_and_stores_nothing(
    rt: Runtime, web: dict[str, WebUser], story: Story
) -> None:
    art, before = story.artifact["id"], _requests(rt)
    page = f"/ui/artifacts/{art}"
    user = web["eval"]
    token = csrf_of(user.text(page))
    fields = {"csrf_token": token, "justification": "a\u0000b", "duration_hours": "1e400"}
    multipart = user.client.post(
        f"/ui/artifacts/{art}/requests", data=fields, content_type="multipart/form-data"
    )
    as_json = user.client.post(f"/ui/artifacts/{art}/requests", json=fields)
    for r in (multipart, as_json):
        assert r.status_code == 415 and r.mimetype == "text/html", r.status_code
    assert _requests(rt) == before
    # the forms' own encoding reaches the view (which answers that a request is pending)
    sent = user.client.post(
        f"/ui/artifacts/{art}/requests",
        data={"csrf_token": token, "justification": "for the evaluation"},
    )
    text = sent.get_data(as_text=True)
    assert sent.status_code == 409 and "Conflict" in text and "media type" not in text, text
