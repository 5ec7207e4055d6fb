"""Bad input is a 4xx problem+json, never a 500, and a refused request leaves nothing behind.

Each test is named after what a client sent: bodies past their bound (chunked or not),
deep nesting, strings that are not Unicode, numbers JSON or the gateway does not take,
integers in queries, paths and headers that are not plain ASCII digits below 2^63, odd
``Range`` headers, recipients no key can be wrapped to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.age import bech32
from gateway.config import Config
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.services.conftest import (  # noqa: F401 - fixtures, shared
    Evaluator,
    Shared,
    evaluator,
    granted,
    shared,
)

UPLOAD = {"name": "model-x", "kind": "weights", "share_with": ["agency-a"]}


class Endless:
    """A request body that never ends by itself, counting what the server read of it."""

    def __init__(self, total: int, fill: bytes = b" ") -> None:
        self.total, self.fill, self.read_bytes = total, fill, 0

    def read(self, n: int = -1) -> bytes:
        n = self.total - self.read_bytes if n is None or n < 0 else n
        n = min(n, self.total - self.read_bytes)
        self.read_bytes += n
        return self.fill * n


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "application/problem+json"
    body: dict[str, Any] = r.get_json()
    assert body["status"] == status and body["detail"]
    return body


def send_raw(
    client: FlaskClient, method: str, path: str, raw: bytes, headers: dict[str, str]
) -> Any:
    return client.open(
        path,
        method=method,
        data=raw,
        headers={**headers, "Content-Type": "application/json"},
    )


def staging(config: Config) -> list[Path]:
    root = Path(config.storage.root) / "staging"
    return sorted(root.iterdir()) if root.exists() else []


# --- bodies past their bound ------------------------------------------------------------


def test_a_chunked_json_body_is_refused_past_its_limit_without_being_read_whole(
    client: FlaskClient, principals: Principals, config: Config
) -> None:
    limit = config.server.max_json_bytes
    body = Endless(16 * limit)
    r = client.open(
        "/v1/me/recipient",
        method="PUT",
        headers={**principals.auth("eval"), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True},
    )
    assert problem(r, 413)["detail"] == f"a JSON body may be at most {limit} bytes"
    assert body.read_bytes <= limit + 64 * 1024


def test_a_json_body_declaring_more_than_its_limit_is_refused_before_a_byte_is_read(
    client: FlaskClient, principals: Principals, config: Config
) -> None:
    limit = config.server.max_json_bytes
    body = Endless(limit + 1)
    r = client.open(
        "/v1/uploads",
        method="POST",
        headers=principals.auth("lab"),
        environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(limit + 1)},
    )
    problem(r, 413)
    assert body.read_bytes == 0


# --- nesting, strings and numbers --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/v1/uploads", b"[" * 100_000),
        ("PUT", "/v1/me/recipient", b'{"a":' * 50_000),
        ("POST", "/v1/uploads", b'{"a":' * 40 + b"1" + b"}" * 40),
    ],
)
def test_deep_json_is_400_before_the_parser_recurses(
    client: FlaskClient, principals: Principals, method: str, path: str, raw: bytes
) -> None:
    who = "lab" if path == "/v1/uploads" else "eval"
    body = problem(send_raw(client, method, path, raw, principals.auth(who)), 400)
    assert "nests deeper than" in body["detail"]


def test_brackets_inside_strings_do_not_count_as_nesting(
    client: FlaskClient, principals: Principals
) -> None:
    raw = json.dumps({**UPLOAD, "description": "[" * 4000}).encode()
    r = send_raw(client, "POST", "/v1/uploads", raw, principals.auth("lab"))
    assert r.status_code == 201, r.get_json()


def test_a_lone_surrogate_in_an_upload_name_is_400_and_leaves_no_staging_folder(
    client: FlaskClient, principals: Principals, config: Config
) -> None:
    before = staging(config)
    raw = b'{"name": "x\\ud800", "kind": "weights", "share_with": ["agency-a"]}'
    body = problem(send_raw(client, "POST", "/v1/uploads", raw, principals.auth("lab")), 400)
    assert "'name'" in body["detail"] and "surrogate" in body["detail"]
    assert staging(config) == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"justification": "\\udfff"}',
        b'{"justification": "ok", "extra": {"deep": ["\\ud800"]}}',
        b'{"justification\\udc00": "ok"}',
    ],
)
def test_a_lone_surrogate_anywhere_in_an_access_request_is_400(
    client: FlaskClient,
    principals: Principals,
    shared: Shared,  # noqa: F811 - the imported fixtures
    raw: bytes,
) -> None:
    path = f"/v1/artifacts/{shared.artifact['id']}/access-requests"
    body = problem(send_raw(client, "POST", path, raw, principals.auth("eval")), 400)
    assert "surrogate" in body["detail"]


def test_a_lone_surrogate_in_the_manifest_at_completion_is_400(lab: Lab) -> None:
    upload = lab.create()
    raw = json.dumps({"manifest": {"version": 1, "name": "PLACEHOLDER"}, "signature": "x"})
    raw = raw.replace("PLACEHOLDER", "\\ud800")
    path = f"/v1/uploads/{upload['id']}/complete"
    body = problem(send_raw(lab.client, "POST", path, raw.encode(), lab.auth), 400)
    assert "'manifest.name'" in body["detail"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"justification": "a", "justification": "b"}', "repeats the key"),
        (b'{"justification": "a", "duration_hours": NaN}', "NaN"),
        (b'{"justification": "a", "duration_hours": -Infinity}', "-Infinity"),
        (b'{"justification": "a", "duration_hours": 1e400}', "too large"),
        (b'{"justification": "a", "duration_hours": 99999999999999999999}', "64 bits"),
        (b'{"justification": "a", "duration_hours": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"justification": "\xff\xfe"}', "not valid JSON"),
    ],
)
def test_numbers_and_keys_json_does_not_allow_are_400(
    client: FlaskClient,
    principals: Principals,
    shared: Shared,  # noqa: F811 - the imported fixtures
    raw: bytes,
    words: str,
) -> None:
    path = f"/v1/artifacts/{shared.artifact['id']}/access-requests"
    body = problem(send_raw(client, "POST", path, raw, principals.auth("eval")), 400)
    assert words in body["detail"]


# --- integers in queries and paths ------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=\uff11\uff10",  # full-width "10"
        "limit=1_0",
        "limit=+5",
        "limit=%205",
        "start=\u00b2",
        "start=9223372036854775808",
        "start=" + "9" * 5000,
    ],
)
def test_query_integers_are_ascii_digits_below_2_63(
    client: FlaskClient, principals: Principals, query: str
) -> None:
    r = client.get(f"/v1/audit/entries?{query}", headers=principals.auth("auditor"))
    assert "ASCII digits" in problem(r, 400)["detail"] or "limit" in r.get_json()["detail"]


@pytest.mark.parametrize(
    "query",
    ["index=\uff10", "index=0&size=1_0", "index=-1", "index=" + "9" * 30],
)
def test_proof_positions_are_ascii_digits_below_2_63(
    client: FlaskClient, principals: Principals, query: str
) -> None:
    r = client.get(f"/v1/audit/proof/inclusion?{query}", headers=principals.auth("auditor"))
    problem(r, 400)


@pytest.mark.parametrize("number", ["\uff10\uff11", "\u0661", "1" + "0" * 30, "9" * 5000])
def test_part_numbers_in_other_digits_or_past_2_63_are_refused_and_store_nothing(
    lab: Lab, number: str
) -> None:
    upload = lab.create()
    r = lab.client.put(
        f"/v1/uploads/{upload['id']}/parts/{number}",
        data=b"x" * 10,
        headers={**lab.auth, "X-Content-SHA256": "0" * 64},
    )
    assert r.status_code in (400, 404), r.status_code
    problem(r, r.status_code)
    parts = lab.client.get(f"/v1/uploads/{upload['id']}", headers=lab.auth).get_json()["parts"]
    assert parts == []


# --- Range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=\u00b2-", 200),
        ("bytes=0-\u00b2", 200),
        ("bytes=\uff10-\uff11", 200),
        ("bytes=" + "9" * 5000 + "-", 200),
        ("bytes=-" + "9" * 5000, 200),
        ("bytes=99999999999999999999999-", 416),
        ("bytes=0-99999999999999999999999", 206),
        ("bytes=-99999999999999999999", 206),
    ],
)
def test_odd_ranges_are_ignored_or_answered_never_a_500(
    evaluator: Evaluator,  # noqa: F811 - the imported fixtures
    granted: dict[str, Any],  # noqa: F811 - the imported fixtures
    shared: Shared,  # noqa: F811 - the imported fixtures
    header: str,
    status: int,
) -> None:
    r = evaluator.client.get(
        f"/v1/artifacts/{shared.artifact['id']}/content",
        headers={**evaluator.auth, "Range": header.encode("utf-8").decode("latin-1")},
    )
    assert r.status_code == status, r.get_data()[:200]
    if status == 416:
        problem(r, 416)
    else:
        assert evaluator.decrypt(r.get_data()) == shared.plaintext


# --- recipients -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipient",
    [
        bech32.encode("age", bytes(32)),  # the all-zero point: low order
        bech32.encode("age", bytes([1]) + bytes(31)),  # order 1
        bech32.encode("age1pq", bytes(1216)),  # a hybrid key whose X25519 half is low order
    ],
)
def test_a_low_order_recipient_is_refused_at_registration(
    client: FlaskClient, principals: Principals, recipient: str
) -> None:
    r = client.put(
        "/v1/me/recipient", json={"recipient": recipient}, headers=principals.auth("eval")
    )
    assert "cannot be wrapped to" in problem(r, 400)["detail"]
    me = client.get("/v1/me", headers=principals.auth("eval")).get_json()
    assert me["recipient"] is None
