"""The ``gateway`` command: operator commands (init, serve, admin, sweep, audit).

Messages in the voice of ``age``: ``gateway: error: ...`` and ``gateway: hint: ...``,
lowercase, no traceback, non-zero exit status on failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from gateway.config import Config, ConfigError, load
from gateway.errors import GatewayError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, hint: str | None = None, code: int = 1) -> None:
    click.echo(f"gateway: error: {message}", err=True)
    if hint:
        click.echo(f"gateway: hint: {hint}", err=True)
    sys.exit(code)


def reported(fn: F) -> F:
    """Turn the gateway's own errors into one-line messages and an exit status."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc))
        except GatewayError as exc:
            fail(exc.diagnostics())

    return wrapper  # type: ignore[return-value]


class State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self.config_path)
        return self._config

    def gateway(self) -> Any:
        from gateway.runtime import Gateway

        return Gateway(self.config)


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="GATEWAY_CONFIG",
    type=click.Path(dir_okay=False),
    help="configuration file (default: $GATEWAY_CONFIG, else config/gateway.toml)",
)
@click.version_option(package_name="model-artifact-gateway", prog_name="gateway")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Secure model-artifact transfer gateway."""
    ctx.obj = State(config_path)


@main.command()
@pass_state
@reported
def init(state: State) -> None:
    """Create keys, the database schema and the object store; safe to run again."""
    from gateway import setup

    for line in setup.init(state.config):
        click.echo(f"gateway: {line}", err=True)


@main.command("dev-seed")
@pass_state
@reported
def dev_seed(state: State) -> None:
    """Create a demo lab, agency and oversight org, and print one development token per role."""
    from gateway import setup

    tokens = setup.dev_seed(state.gateway())
    click.echo("# development tokens: for trying the gateway on this machine only", err=True)
    for role, (org, name, token) in tokens.items():
        click.echo(f"{role:<10} {org}/{name}  {token}")
    config = state.config
    click.echo(
        f"gateway: hint: export GATEWAY_URL=http://{config.server.host}:{config.server.port} "
        "GATEWAY_TOKEN=<a token above>, then try `gateway whoami`",
        err=True,
    )


@main.command()
@click.option("--host", default=None, help="address to listen on (default: server.host)")
@click.option("--port", default=None, type=int, help="port to listen on (default: server.port)")
@pass_state
@reported
def serve(state: State, host: str | None, port: int | None) -> None:
    """Run the production server (gunicorn, threaded workers, periodic sweeper)."""
    from gateway.server import run

    config = state.config
    if host or port:
        config = config.replace(
            **{"server.host": host or config.server.host, "server.port": port or config.server.port}
        )
    run(config)


@main.command()
@pass_state
@reported
def sweep(state: State) -> None:
    """Expire grants and artifacts, shred keys, delete objects, time out stale uploads."""
    from gateway.sweeper import sweep_once

    report = sweep_once(state.gateway())
    for what, count in report.items():
        click.echo(f"{what}: {count}")


@main.group()
def admin() -> None:
    """Organisations and tokens (operator bootstrap)."""


@admin.group("org")
def admin_org() -> None:
    """Organisations."""


@admin_org.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["lab", "agency", "oversight"]), required=True)
@pass_state
@reported
def org_create(state: State, name: str, kind: str) -> None:
    """Create organisation NAME."""
    from gateway import events
    from gateway.services import identity

    gw = state.gateway()
    with events.fail_closed(gw) as session:
        identity.create_org(session, name, kind, gw.now())
        events.record(gw, session, "admin.org.create", None, details={"org": name, "kind": kind})
    click.echo(name)


@admin.group("token")
def admin_token() -> None:
    """Bearer tokens."""


@admin_token.command("create")
@click.option("--org", required=True)
@click.option("--role", type=click.Choice(["lab", "evaluator", "auditor", "admin"]), required=True)
@click.option("--name", required=True, help="the principal's name within the organisation")
@click.option(
    "--ttl-days", type=int, default=None, help="lifetime in days (default: tokens.default_ttl_days)"
)
@pass_state
@reported
def token_create(state: State, org: str, role: str, name: str, ttl_days: int | None) -> None:
    """Create a token for principal NAME of ORG; prints only the token on stdout."""
    from gateway import events
    from gateway.services import identity

    gw = state.gateway()
    ttl = ttl_days if ttl_days is not None else gw.config.tokens.default_ttl_days
    with events.fail_closed(gw) as session:
        token, principal = identity.create_token(
            session, org=org, role=role, name=name, ttl_days=ttl, now=gw.now()
        )
        events.record(
            gw,
            session,
            "admin.token.create",
            None,
            details={"org": org, "principal": principal.id, "role": role, "ttl_days": ttl},
        )
    click.echo(token)


@admin_token.command("revoke")
@click.option("--org", required=True)
@click.option("--name", required=True, help="the principal whose tokens are revoked")
@pass_state
@reported
def token_revoke(state: State, org: str, name: str) -> None:
    """Revoke every token of principal NAME of ORG."""
    from gateway import events
    from gateway.services import identity

    gw = state.gateway()
    with events.fail_closed(gw) as session:
        count = identity.revoke_tokens(session, org=org, name=name, now=gw.now())
        events.record(
            gw,
            session,
            "admin.token.revoke",
            None,
            details={"org": org, "principal": name, "count": count},
        )
    click.echo(f"revoked {count} token(s)", err=True)


@click.command("publish")
@click.option("--force", is_flag=True, help="publish now even if no anchor is due")
@pass_state
@reported
def audit_publish(state: State, force: bool) -> None:
    """Publish a signed checkpoint and its entries to the audit archive (operator)."""
    from gateway.services import anchor

    name = anchor.publish(state.gateway(), force=force)
    click.echo(f"gateway: published {name}" if name else "gateway: no anchor due", err=True)


@click.command("anchors")
@click.option(
    "--key", "vkey", default=None, help="verifier key to trust (default: the gateway's own)"
)
@pass_state
@reported
def audit_anchors(state: State, vkey: str | None) -> None:
    """Check that the live log extends every published checkpoint (operator, offline)."""
    from gateway.services import anchor

    report = anchor.check_published(state.gateway(), vkey)
    if not report.ok:
        fail(report.message)
    click.echo(f"OK: {report.message}")


def _register_client() -> None:
    from gateway.client.commands import register

    register(main)
    audit = main.commands.get("audit")
    if isinstance(audit, click.Group):
        audit.add_command(audit_publish)
        audit.add_command(audit_anchors)


_register_client()


if __name__ == "__main__":  # pragma: no cover
    main()
