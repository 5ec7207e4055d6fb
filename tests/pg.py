"""A throwaway PostgreSQL cluster for the tests: ``initdb``, ``pg_ctl``, a unix socket, then gone.

The server binaries are Debian's (``postgresql``; ``make deps`` installs them), found under
``/usr/lib/postgresql/<version>/bin`` (the newest), on ``PATH``, or in ``$GATEWAY_PG_BINDIR``.
The cluster listens on no TCP port at all: only on a unix socket in its own temporary
directory (mode 0700), with ``trust`` authentication, so nothing outside this machine's
root and the cluster's owner can reach it. ``fsync`` is off: a crash loses nothing a test
needs.

PostgreSQL refuses to run as root. Run as root (CI is), the cluster's directory is given
to an unprivileged user (``nobody``, or ``$GATEWAY_PG_USER``) and ``initdb`` and
``pg_ctl`` run as that user through ``runuser``; the tests, as root, still reach the socket.

Each test gets a database of its own, copied from a template that is migrated once
(:meth:`Cluster.template`), so a test costs a ``CREATE DATABASE``, not a migration.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
TEMPLATE = "gateway_template"
_VERSION = re.compile(r"/postgresql/(\d+)(?:\.\d+)?/bin$")


class ClusterUnavailable(Exception):
    """PostgreSQL's server programs are missing or would not start; the message says which."""


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: the configured one, ``PATH``, or Debian's newest."""
    configured = os.environ.get("GATEWAY_PG_BINDIR")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").is_file() else None
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        match = _VERSION.search(str(candidate))
        if match and (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            found.append((int(match.group(1)), candidate))
    return max(found)[1] if found else None


def _owner() -> str | None:
    """The user the server runs as when the tests run as root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("GATEWAY_PG_USER", "nobody")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ClusterUnavailable(
            f"running as root, PostgreSQL needs an unprivileged user to run as; {name!r} does "
            "not exist (set GATEWAY_PG_USER)"
        ) from None
    return name


class Cluster:
    """A running throwaway cluster: its directory, its socket, and databases made from a template."""

    def __init__(self, bindir: Path, root: Path, owner: str | None) -> None:
        self.bindir, self.root, self.owner = bindir, root, owner
        self.data, self.socket_dir, self.log = root / "data", root / "socket", root / "server.log"
        self._template_ready = False

    # --- the server ---------------------------------------------------------------------

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            who = (
                f" (it runs as {self.owner}, which must be able to reach {self.root}: "
                "point TMPDIR at a directory it can)"
                if self.owner
                else ""
            )
            raise ClusterUnavailable(f"{program} failed: {tail}{who}")

    def start(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        if self.owner is not None:
            info = pwd.getpwnam(self.owner)
            for path in (self.root, self.socket_dir):
                os.chown(path, info.pw_uid, info.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = " ".join(
            (
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.socket_dir}'",
                "-c unix_socket_permissions=0700",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
                "-c shared_buffers=64MB",
            )
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop the server at once and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ----------------------------------------------------------------------

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (the psycopg 3 driver, over the socket)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def create_database(self, name: str, template: str = "template0") -> str:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def template(self, migrate: Callable[[str], None]) -> str:
        """The name of the template database, migrated once by ``migrate(url)``."""
        if not self._template_ready:
            self.create_database(TEMPLATE)
            migrate(self.url(TEMPLATE))
            self._template_ready = True
        return TEMPLATE

    @contextmanager
    def database(self, template: str = "template0") -> Iterator[str]:
        """A fresh database copied from ``template``, dropped afterwards; yields its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        url = self.create_database(name, template)
        try:
            yield url
        finally:
            self.drop_database(name)


def start_cluster() -> Cluster:
    """A new running cluster in a temporary directory; raise :class:`ClusterUnavailable` if not."""
    bindir = find_bindir()
    if bindir is None:
        raise ClusterUnavailable(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed "
            "(Debian package postgresql; `make deps` installs it)"
        )
    owner = _owner()
    cluster = Cluster(bindir, Path(tempfile.mkdtemp(prefix="gateway-pg-")), owner)
    try:
        cluster.start()
    except BaseException:
        log = cluster.log.read_text(errors="replace")[-2000:] if cluster.log.exists() else ""
        cluster.stop()
        if log:
            raise ClusterUnavailable(f"the PostgreSQL server did not start: {log}") from None
        raise
    return cluster
