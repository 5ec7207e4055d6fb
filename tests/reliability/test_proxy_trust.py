"""The client's address behind a proxy: believed from ``server.trusted_proxies`` only.

Each request comes from a peer address (``REMOTE_ADDR``, what the socket says) and may
carry ``X-Forwarded-For``. The address an audit entry keeps, and the address budget a
request counts against, must be the client's: the one the trusted proxy added, and
never one the client wrote itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.audit import store as audit_store
from gateway.config import Config, ConfigError, load
from gateway.runtime import Runtime
from tests.conftest import Principals, make_config

PROXY = "10.9.8.7"
PROXY_NET = "192.0.2.0/24"


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(
        tmp_path,
        **{
            "database.url": db_url,
            "server.trusted_proxies": [PROXY, PROXY_NET],
            "limits.address_writes": "3/minute",
        },
    )


def _create(client: FlaskClient, principals: Principals, peer: str, **headers: str) -> Any:
    body = {"name": "w", "kind": "weights", "share_with": ["agency-a"]}
    return client.post(
        "/v1/uploads",
        json=body,
        headers={**principals.auth("lab"), **headers},
        environ_base={"REMOTE_ADDR": peer},
    )


def _logged_ip(rt: Runtime, request_id: str) -> str | None:
    with rt.db.session() as session:
        (entry,) = audit_store.entries(session, request_id=request_id)
        ip: str | None = entry.entry()["ip"]
        return ip


@pytest.mark.parametrize(
    ("peer", "forwarded", "logged"),
    [
        # A trusted proxy's own addition is the last value; what came before, the client wrote.
        (PROXY, "6.6.6.6, 203.0.113.5", "203.0.113.5"),
        (PROXY, "203.0.113.9", "203.0.113.9"),
        ("192.0.2.44", "203.0.113.7", "203.0.113.7"),  # in the trusted network
        (f"::ffff:{PROXY}", "203.0.113.8", "203.0.113.8"),  # IPv4 peer on an IPv6 socket
        # Any other peer: its header is ignored, the peer's own address is the client's.
        ("198.51.100.1", "203.0.113.5", "198.51.100.1"),
        ("127.0.0.1", "203.0.113.5", "127.0.0.1"),
        (PROXY, "", PROXY),  # a proxy that passed nothing on: the proxy's own address
    ],
)
def test_the_logged_address_is_the_clients(
    client: FlaskClient,
    principals: Principals,
    rt: Runtime,
    peer: str,
    forwarded: str,
    logged: str,
) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    answer = _create(client, principals, peer, **headers)
    assert answer.status_code == 201, answer.get_json()
    assert _logged_ip(rt, answer.headers["X-Request-Id"]) == logged


def test_a_forwarded_scheme_is_believed_from_a_trusted_proxy_only(
    client: FlaskClient, principals: Principals
) -> None:
    # The scheme reaches the application as wsgi.url_scheme: the signed-URL base uses it.
    seen: list[str] = []

    @client.application.before_request
    def _note() -> None:
        from flask import request

        seen.append(request.scheme)

    for peer in (PROXY, "198.51.100.1"):
        client.get(
            "/healthz", headers={"X-Forwarded-Proto": "https"}, environ_base={"REMOTE_ADDR": peer}
        )
    assert seen == ["https", "http"]


def test_clients_behind_one_proxy_have_budgets_of_their_own_and_cannot_forge_new_ones(
    client: FlaskClient, principals: Principals
) -> None:
    statuses = [
        _create(client, principals, PROXY, **{"X-Forwarded-For": "203.0.113.1"}).status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    # Another client of the same proxy still has its whole budget.
    other = _create(client, principals, PROXY, **{"X-Forwarded-For": "203.0.113.2"})
    assert other.status_code == 201
    # A direct client naming a new address each time still spends its own budget.
    direct = [
        _create(
            client, principals, "198.51.100.1", **{"X-Forwarded-For": f"203.0.113.{10 + n}"}
        ).status_code
        for n in range(4)
    ]
    assert direct == [201, 201, 201, 429]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "setting server.trusted_proxies: 10.0.0.1/8 has host bits set"),
        ("proxy.internal", "setting server.trusted_proxies: 'proxy.internal' does not appear"),
    ],
)
def test_a_trusted_proxy_that_is_no_address_stops_start_up(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load(environ={"GATEWAY_SERVER_TRUSTED_PROXIES": f"127.0.0.1, {value}"})


def test_trusted_proxies_read_from_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[server]\ntrusted_proxies = ["10.0.0.5", "fd00::/8"]\n')
    assert load(path, environ={}).server.trusted_proxies == ("10.0.0.5", "fd00::/8")
    from_env = load(environ={"GATEWAY_SERVER_TRUSTED_PROXIES": " 10.0.0.5 ,10.0.0.6,"})
    assert from_env.server.trusted_proxies == ("10.0.0.5", "10.0.0.6")
    assert load(environ={}).server.trusted_proxies == ()
    path.write_text("[server]\ntrusted_proxies = [1]\n")
    with pytest.raises(ConfigError, match="server.trusted_proxies: expected a list of strings"):
        load(path, environ={})
