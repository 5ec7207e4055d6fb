"""The ``gateway`` command: the client's commands and the operator's, in one group.

Design note. :data:`main` is :func:`gateway.client.cli.build` given, in this one place,
the operator commands (init, dev-seed, serve, sweep, admin), the operator's ``audit``
subcommands (publish, anchors) and the ``--config`` root option. The server stack
(Flask, SQLAlchemy, Alembic, gunicorn, boto3) is the ``[server]`` extra of the
distribution: the operator commands import it only when they run, so that the base
install (the client) has every command's help, runs every client command, and answers
an operator command with one line naming the extra to install.

Messages in the voice of ``age`` (:mod:`gateway.tui`). An operator command says which
configuration it read with ``-v``, and always when it found no file (the defaults, and
the directory they are relative to); every command but ``init`` refuses a gateway that
is not there, naming the configuration, instead of creating an empty one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import click

from gateway.client.auditcheck import read_key
from gateway.client.cli import build, log_level
from gateway.client.errors import ClientError
from gateway.config import SEARCHED, Config, ConfigError, load
from gateway.storage import StorageError
from gateway.tui import fail, hint, reported, say
from gateway.witness.cli import witness

P = ParamSpec("P")
R = TypeVar("R")

SERVER_EXTRA = "model-artifact-gateway[server]"
SERVER_MODULES = frozenset(
    {
        "alembic",
        "boto3",
        "botocore",
        "flask",
        "gunicorn",
        "prometheus_client",
        "sqlalchemy",
        "werkzeug",
    }
)
# The choices of gateway.models (which needs the server stack), restated for --help.
ORG_KINDS = ("lab", "agency", "oversight")
ROLES = ("lab", "evaluator", "auditor", "admin")


def origin(config: Config) -> str:
    """Where ``config``'s settings came from, briefly (for errors)."""
    return f"from {config.source}" if config.source != "defaults" else "from the built-in defaults"


def describe(config: Config) -> str:
    """Which configuration ``config`` came from, in words."""
    if config.source != "defaults":
        return f"configuration {config.source}"
    looked = " and ".join(str(p) if p.is_absolute() else f"./{p}" for p in SEARCHED)
    return (
        f"no configuration file (looked for {looked}; --config or $GATEWAY_CONFIG name one): "
        f"the built-in defaults, relative to {Path.cwd()}"
    )


class State:
    """What an operator command is run with: the configuration, read when first needed."""

    def __init__(self, config_path: str | None, verbose: int = 0, command: str = "") -> None:
        self.config_path = config_path
        self.verbose = verbose
        self.command = command
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self.config_path)
            if self.verbose or self._config.source == "defaults":
                say(describe(self._config))
            if self.command != "init":
                self._require_gateway(self._config)
        return self._config

    @staticmethod
    def _require_gateway(config: Config) -> None:
        from gateway import bootstrap

        try:
            bootstrap.require_database(config)
        except bootstrap.NotInstalled as exc:
            fail(
                f"{exc} (its path is {origin(config)})",
                hint="point --config (or $GATEWAY_CONFIG) at the gateway's configuration, "
                "or run `gateway init` to make a new gateway there",
            )


@contextmanager
def server_stack(command: str) -> Iterator[None]:
    """What the server stack raises, as one line: a module not installed, a database refusal.

    A missing module of the ``[server]`` extra names the extra; any other missing module
    (a database driver, say) names itself. A database error is told by its first line
    (SQLAlchemy's, without the statement or the URL).
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        name = exc.name or str(exc)
        if name.partition(".")[0] in SERVER_MODULES:
            fail(f"`{command}` needs the server install: pip install '{SERVER_EXTRA}'")
        fail(f"`{command}` needs the Python module {name}, which is not installed")
    except Exception as exc:
        if not type(exc).__module__.startswith("sqlalchemy."):
            raise
        text = _first_line(exc)
        fail(
            f"the database refused: {text}",
            hint="run `gateway init` to create or upgrade its schema"
            if "no such table" in text
            else None,
        )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # the driver's own error, without SQLAlchemy's wrapping
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def operator(fn: Callable[Concatenate[State, P], R]) -> Callable[P, R]:
    """An operator command: given the :class:`State`, its errors reported, the server checked."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        root = ctx.find_root().params
        state = State(root.get("config_path"), int(root.get("verbose") or 0), ctx.info_name or "")
        with server_stack(ctx.command_path):
            return fn(state, *args, **kwargs)

    return reported(ConfigError, StorageError, ClientError)(wrapper)


@click.command()
@operator
def init(state: State) -> None:
    """Create keys, the database schema and the object store; safe to run again."""
    from gateway import bootstrap

    for line in bootstrap.init(state.config):
        say(line)


@click.command("dev-seed")
@click.option(
    "--force",
    is_flag=True,
    help="seed even a configuration that is not the embedded development one",
)
@operator
def dev_seed(state: State, force: bool) -> None:
    """Create a demo lab, agency and oversight org, and print one development token per role.

    Only on the embedded development configuration (SQLite, local object store and key
    custody, no witnesses): it prints live tokens, an admin's among them. Running it again
    revokes the demo principals' earlier tokens.
    """
    from gateway import bootstrap

    found = bootstrap.not_development(state.config)
    if found and not force:
        fail(
            f"dev-seed is for the embedded development configuration only: {'; '.join(found)}",
            hint="it prints live tokens, an admin's among them; pass --force to seed anyway",
        )
    with bootstrap.opened(state.config) as gw:
        tokens = bootstrap.dev_seed(gw)
    click.echo("# development tokens: for trying the gateway on this machine only", err=True)
    for role, (org, name, token) in tokens.items():
        click.echo(f"{role:<10} {org}/{name}  {token}")
    server = state.config.server
    hint(
        f"export GATEWAY_URL=http://{server.host}:{server.port} GATEWAY_TOKEN=<a token above> "
        f"(the address `gateway serve` listens on, server.port here; or the --port you give it), "
        "then try `gateway whoami`"
    )


@click.command()
@click.option("--host", default=None, help="address to listen on (default: server.host)")
@click.option("--port", default=None, type=int, help="port to listen on (default: server.port)")
@operator
def serve(state: State, host: str | None, port: int | None) -> None:
    """Run the production server (gunicorn, threaded workers, periodic sweeper).

    It logs at server.log_level, or at info with -v and debug with -vv.
    """
    from gateway import bootstrap
    from gateway.server import run

    config = state.config
    problems = bootstrap.preflight(config)
    if problems:
        fail(
            f"not ready to serve (settings {origin(config)}): {'; '.join(problems)}",
            hint="run `gateway init` with this configuration",
        )
    changes: dict[str, object] = {}
    if host or port:
        changes["server.host"] = host or config.server.host
        changes["server.port"] = port or config.server.port
    if state.verbose:
        changes["server.log_level"] = logging.getLevelName(log_level(state.verbose)).lower()
    run(config.replace(**changes) if changes else config)


@click.command()
@operator
def sweep(state: State) -> None:
    """Expire grants and artifacts, shred keys, delete objects, time out stale uploads."""
    from gateway import bootstrap
    from gateway.sweeper import sweep_once

    with bootstrap.opened(state.config) as gw:
        report = sweep_once(gw)
    for what, count in report.items():
        click.echo(f"{what}: {count}")


@click.group()
def admin() -> None:
    """Organisations, tokens and signing keys (operator bootstrap)."""


@admin.group("org")
def admin_org() -> None:
    """Organisations."""


@admin_org.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(ORG_KINDS), required=True)
@operator
def org_create(state: State, name: str, kind: str) -> None:
    """Create organisation NAME."""
    from gateway import bootstrap

    with bootstrap.opened(state.config) as gw:
        bootstrap.create_org(gw, name, kind)
    click.echo(name)


@admin.group("token")
def admin_token() -> None:
    """Bearer tokens."""


@admin_token.command("create")
@click.option("--org", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", required=True, help="the principal's name within the organisation")
@click.option(
    "--ttl-days", type=int, default=None, help="lifetime in days (default: tokens.default_ttl_days)"
)
@operator
def token_create(state: State, org: str, role: str, name: str, ttl_days: int | None) -> None:
    """Create a token for principal NAME of ORG; prints only the token on stdout."""
    from gateway import bootstrap

    ttl = ttl_days if ttl_days is not None else state.config.tokens.default_ttl_days
    with bootstrap.opened(state.config) as gw:
        token = bootstrap.create_token(gw, org, role, name, ttl)
    click.echo(token)


@admin_token.command("revoke")
@click.option("--org", required=True)
@click.option("--name", required=True, help="the principal whose tokens are revoked")
@operator
def token_revoke(state: State, org: str, name: str) -> None:
    """Revoke every token of principal NAME of ORG."""
    from gateway import bootstrap

    with bootstrap.opened(state.config) as gw:
        count = bootstrap.revoke_tokens(gw, org, name)
    click.echo(f"revoked {count} token(s)", err=True)


@admin.group("signing-key")
def admin_signing_key() -> None:
    """Organisations' manifest-signing keys."""


@admin_signing_key.command("revoke")
@click.option("--org", required=True, help="the organisation that registered the key")
@click.option("--key", "key", required=True, help="the key's id, or its public key (base64)")
@operator
def signing_key_revoke(state: State, org: str, key: str) -> None:
    """Revoke a signing key of ORG for good (an identity.signing_key.revoke entry)."""
    from gateway import bootstrap
    from gateway.services import identity

    with bootstrap.opened(state.config) as gw:
        row = identity.revoke_signing_key(gw, None, identity.operator_signing_key(gw, org, key))
    say(f"signing key {row.id} of {org} revoked")


@click.command("publish")
@click.option("--force", is_flag=True, help="publish now even if no anchor is due")
@operator
def audit_publish(state: State, force: bool) -> None:
    """Publish a signed checkpoint and its entries to the audit archive (operator)."""
    from gateway import bootstrap
    from gateway.services import anchor

    with bootstrap.opened(state.config) as gw:
        name = anchor.publish(gw, force=force)
    say(
        f"published {name}"
        if name
        else "no anchor published: none due, or not cosigned by the witnesses' quorum yet "
        "(the log says which)"
    )


@click.command("anchors")
@click.option(
    "--key",
    "vkey",
    default=None,
    help="verifier key to trust: the key, or a file holding it (default: the gateway's own)",
)
@operator
def audit_anchors(state: State, vkey: str | None) -> None:
    """Check that the live log extends every published checkpoint (operator, offline)."""
    from gateway import bootstrap
    from gateway.services import anchor

    trusted = read_key(vkey) if vkey is not None else None
    with bootstrap.opened(state.config) as gw:
        report = anchor.check_published(gw, trusted)
    if not report.ok:
        fail(report.message)
    click.echo(f"OK: {report.message}")


@click.command("policy")
@operator
def audit_policy(state: State) -> None:
    """Print this gateway's C2SP tlog-policy (its key, witnesses, quorum) for auditors to keep."""
    from gateway import bootstrap
    from gateway.services import cosigning

    with bootstrap.opened(state.config) as gw:
        try:
            text = cosigning.log_witnesses(gw).text
        except ValueError as exc:
            fail(str(exc))
    click.echo(text, nl=False)


CONFIG_OPTION = click.Option(
    ["--config", "config_path"],
    envvar="GATEWAY_CONFIG",
    type=click.Path(dir_okay=False),
    help="configuration file (default: $GATEWAY_CONFIG, else ./config/gateway.toml, else "
    "/etc/gateway/gateway.toml; relative paths in it are relative to its directory)",
)

main = build(
    commands=[init, dev_seed, serve, sweep, admin, witness],
    audit_commands=[audit_publish, audit_anchors, audit_policy],
    params=[CONFIG_OPTION],
)
"""The ``gateway`` command: every client command and every operator command."""


if __name__ == "__main__":  # pragma: no cover
    main()
