"""The client's trust in a gateway served over TLS by a private CA: ``--ca-cert`` and its kin.

The gateway's own app is served over real TLS (Werkzeug with a throwaway CA's certificate
for 127.0.0.1); the real CLI then trusts that CA through ``gateway --ca-cert FILE``,
``GATEWAY_CA_CERT``, a profile's ``ca_cert`` or ``REQUESTS_CA_BUNDLE``, and without any
of them refuses in one line that names ``--ca-cert``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from werkzeug.serving import make_server

from gateway.cli import main
from tests.conftest import Principals
from tests.e2e.nginx import Certificate, make_certificate

UNSET = ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_PROFILE", "GATEWAY_CONFIG", "GATEWAY_CA_CERT")


@dataclass
class TlsGateway:
    url: str
    tls: Certificate
    other: Certificate  # a CA that did not sign the gateway's certificate
    principals: Principals
    home: Path

    def gateway(self, *args: str, token: bool = True, **env: str) -> Result:
        given: dict[str, str | None] = {name: None for name in UNSET}
        given.update({"XDG_CONFIG_HOME": str(self.home), "REQUESTS_CA_BUNDLE": None})
        if token:
            given.update({"GATEWAY_URL": self.url, "GATEWAY_TOKEN": self.principals.tokens["lab"]})
        given.update(env)
        return CliRunner().invoke(main, list(args), env=given, catch_exceptions=False)


@pytest.fixture
def tls_gateway(app: Flask, principals: Principals, tmp_path: Path) -> Iterator[TlsGateway]:
    tls = make_certificate(tmp_path / "tls")
    other = make_certificate(tmp_path / "other")
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, ssl_context=(str(tls.cert), str(tls.key))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield TlsGateway(
            f"https://127.0.0.1:{server.server_port}",
            tls,
            other,
            principals,
            tmp_path / "client-config",
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def assert_untrusted(done: Result, url: str, by: str) -> None:
    assert done.exit_code == 1, done.output
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(
        f"gateway: error: the server's TLS certificate is not trusted by {by} ("
    )
    assert lines[0].endswith(f"): {url}")
    assert lines[1].startswith("gateway: hint: ") and "--ca-cert FILE" in lines[1]
    assert "Traceback" not in done.output


def test_an_unknown_ca_is_one_line_with_a_hint_naming_ca_cert(tls_gateway: TlsGateway) -> None:
    assert_untrusted(tls_gateway.gateway("whoami"), tls_gateway.url, "this machine")


def test_ca_cert_on_the_command_line_is_trusted(tls_gateway: TlsGateway) -> None:
    done = tls_gateway.gateway("--ca-cert", str(tls_gateway.tls.ca), "whoami")
    assert done.exit_code == 0, done.output
    assert "lab-a" in done.stdout


def test_gateway_ca_cert_in_the_environment_is_trusted(tls_gateway: TlsGateway) -> None:
    done = tls_gateway.gateway("whoami", GATEWAY_CA_CERT=str(tls_gateway.tls.ca))
    assert done.exit_code == 0, done.output


def test_requests_ca_bundle_keeps_working(tls_gateway: TlsGateway) -> None:
    done = tls_gateway.gateway("whoami", REQUESTS_CA_BUNDLE=str(tls_gateway.tls.ca))
    assert done.exit_code == 0, done.output


def test_ca_cert_wins_over_requests_ca_bundle(tls_gateway: TlsGateway) -> None:
    wrong = str(tls_gateway.other.ca)
    done = tls_gateway.gateway(
        "--ca-cert", wrong, "whoami", REQUESTS_CA_BUNDLE=str(tls_gateway.tls.ca)
    )
    assert_untrusted(done, tls_gateway.url, f"the CA in {Path(wrong).resolve()}")
    right = tls_gateway.gateway(
        "--ca-cert", str(tls_gateway.tls.ca), "whoami", GATEWAY_CA_CERT=wrong
    )
    assert right.exit_code == 0, right.output  # and over GATEWAY_CA_CERT


def test_a_profile_keeps_its_ca_cert_and_uses_it(tls_gateway: TlsGateway) -> None:
    ca = str(tls_gateway.tls.ca)

    def profile_set(*extra: str) -> Result:
        args = ["profile", "set", "lab", "--url", tls_gateway.url, *extra, "--token", "-"]
        env: dict[str, str | None] = {name: None for name in UNSET}
        env.update({"XDG_CONFIG_HOME": str(tls_gateway.home), "REQUESTS_CA_BUNDLE": None})
        token = tls_gateway.principals.tokens["lab"] + "\n"
        return CliRunner().invoke(main, args, input=token, env=env, catch_exceptions=False)

    refused = profile_set()
    assert refused.exit_code == 1  # checked against the gateway: not trusted, not saved
    assert "--ca-cert" in refused.stderr and "nothing was saved" in refused.stderr
    assert not (tls_gateway.home / "gateway" / "profiles.toml").exists()
    saved = profile_set("--ca-cert", ca)
    assert saved.exit_code == 0, saved.output
    profiles = (tls_gateway.home / "gateway" / "profiles.toml").read_text()
    assert f'ca_cert = "{Path(ca).resolve()}"' in profiles

    done = tls_gateway.gateway("whoami", "--profile", "lab", token=False)
    assert done.exit_code == 0, done.output
    overridden = tls_gateway.gateway(
        "whoami", "--profile", "lab", token=False, GATEWAY_CA_CERT=str(tls_gateway.other.ca)
    )
    assert overridden.exit_code == 1  # the environment's CA wins over the profile's


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "No such file or directory"), (b"not a certificate\n", "not a PEM certificate file")],
)
def test_a_ca_cert_that_is_not_a_certificate_file_is_one_line(
    tls_gateway: TlsGateway, tmp_path: Path, content: bytes | None, said: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    done = tls_gateway.gateway("--ca-cert", str(path), "whoami")
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [f"gateway: error: --ca-cert {path}: {said}"]
