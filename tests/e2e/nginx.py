"""nginx in front of gateway instances, as shipped: ``config/nginx.conf``, run from a directory.

:func:`render` takes the shipped file and replaces only what a deployment replaces (the
listening address, the certificate, the upstream servers) and where a local run keeps its
files (pid, logs, temporary files); every replacement must match exactly once, so a
change to the shipped file that would leave a test running some other configuration
fails here instead. :func:`make_certificate` makes a throwaway CA and a server
certificate for ``localhost`` and ``127.0.0.1`` with ``cryptography``.
:class:`Nginx` runs the Debian ``nginx`` program (``make deps`` installs it) in the
foreground and stops it.

Used by the end-to-end tests, ``make run-cluster`` and ``bench/bench_cluster.py``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHECKOUT = Path(__file__).resolve().parents[2]
SHIPPED = CHECKOUT / "config" / "nginx.conf"


class NginxUnavailable(Exception):
    """The nginx program is missing or would not start; the message says which."""


def find_nginx() -> str | None:
    """The nginx program: on ``PATH``, or where Debian puts it (``/usr/sbin``, not on every PATH)."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


@dataclass(frozen=True)
class Certificate:
    ca: Path  # what clients trust (REQUESTS_CA_BUNDLE, --ca-cert)
    cert: Path
    key: Path


def make_certificate(directory: Path) -> Certificate:
    """A throwaway CA, and a certificate it signed for ``localhost`` and ``127.0.0.1``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificate(directory / "ca.crt", directory / "gateway.crt", directory / "gateway.key")
    found.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key.touch(mode=0o600)
    found.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, lambda _m: replacement, text, flags=re.MULTILINE)
    if count != 1:
        raise ValueError(f"config/nginx.conf: expected one match of {pattern!r}, found {count}")
    return new


def render(
    *,
    port: int,
    cert: Certificate,
    upstreams: Sequence[str],
    run_dir: Path,
    proxy_bind: str | None = None,
    template: str | None = None,
) -> str:
    """The shipped configuration for a local run: listen on 127.0.0.1:``port``, files in ``run_dir``.

    ``proxy_bind`` makes nginx connect to the instances from that local address, so a test
    tells the proxy's address from the client's although both are on this machine.
    """
    text = SHIPPED.read_text() if template is None else template
    # Run as root (CI), the workers keep root's access to run_dir; as anyone else nginx
    # runs as that user and ignores the directive.
    user = "user root;" if os.geteuid() == 0 else "# user: the invoking user"
    text = _replace_once(text, r"^user .*;$", user)
    text = _replace_once(text, r"^pid .*;$", f"pid {run_dir / 'nginx.pid'};")
    text = _replace_once(text, r"^error_log .*;$", f"error_log {run_dir / 'error.log'} info;")
    temp = "\n".join(
        f"    {kind}_temp_path {run_dir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = _replace_once(
        text,
        r"^    access_log .*;$",
        f"    access_log {run_dir / 'access.log'} gateway;\n{temp}",
    )
    servers = "\n".join(f"        server {u};" for u in upstreams)
    text = _replace_once(text, r"^(        server \S+:\d+;\n)+", servers + "\n")
    text = _replace_once(
        text, r"^        listen 443 ssl;$", f"        listen 127.0.0.1:{port} ssl;"
    )
    text = _replace_once(
        text, r"^        ssl_certificate /\S+;$", f"        ssl_certificate {cert.cert};"
    )
    text = _replace_once(
        text, r"^        ssl_certificate_key /\S+;$", f"        ssl_certificate_key {cert.key};"
    )
    if proxy_bind is not None:
        text = _replace_once(
            text,
            r"^        proxy_http_version 1\.1;$",
            f"        proxy_http_version 1.1;\n        proxy_bind {proxy_bind};",
        )
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """nginx running ``render(...)`` from ``run_dir`` in the foreground; :meth:`stop` ends it."""

    def __init__(self, run_dir: Path, conf: str, port: int) -> None:
        self.run_dir, self.port = run_dir, port
        self.url = f"https://127.0.0.1:{port}"
        self.conf = run_dir / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None
        run_dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(conf)

    def temp_files(self, kind: str) -> list[Path]:
        """The files nginx keeps in its ``kind`` temporary directory (``client_body``, ``proxy``)."""
        return [p for p in (self.run_dir / kind).rglob("*") if p.is_file()]

    def start(self) -> None:
        program = find_nginx()
        if program is None:
            raise NginxUnavailable(
                "the nginx program is not installed (Debian package nginx; `make deps` installs it)"
            )
        argv = [program, "-p", str(self.run_dir), "-c", str(self.conf), "-e", "stderr"]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise NginxUnavailable(f"nginx -t refused the configuration: {check.stderr.strip()}")
        log = open(self.run_dir / "nginx.out", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [*argv, "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NginxUnavailable(
                    "nginx exited: " + (self.run_dir / "nginx.out").read_text(errors="replace")
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise NginxUnavailable(f"nginx did not listen on port {self.port} within 20 s")

    def stop(self) -> None:
        """Stop at once (SIGTERM: nginx's fast shutdown), and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
