"""The client's ``gateway`` command: profiles, whoami, keys, push, pull, access, audit.

OpenSSF Model Signing keys are registered with ``gateway oms-key register``.

Design note. :func:`build` makes the ``gateway`` group: every client command, the
client's own ``audit`` group, and whatever commands, ``audit`` subcommands and root
options a caller adds: :mod:`gateway.cli` adds the operator's in a server install.
Nothing is registered at import time and no group is changed after it is made, so
the client alone (:data:`main`, ``python -m gateway.client``) imports nothing of the
server. ``-v`` / ``--verbose`` sets the log level of what is logged on stderr
(retries, each request's status with ``-vv``; never a token).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import click

from gateway.client import (
    access,
    audit,
    auditmine,
    ending,
    keycmds,
    labpush,
    listings,
    me,
    omskeys,
    profilecmds,
    pullcmd,
    signingkeys,
    uploads,
)
from gateway.client.voice import GatewayGroup

DISTRIBUTION = "model-artifact-gateway"
CONTEXT = {"help_option_names": ["-h", "--help"]}
LOG_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


def log_level(verbose: int) -> int:
    """WARNING, INFO with ``-v``, DEBUG with ``-vv``."""
    return LOG_LEVELS[min(max(verbose, 0), len(LOG_LEVELS) - 1)]


def configure_logging(verbose: int) -> None:
    """With ``-v``, log the gateway's own loggers on stderr at INFO (``-vv``: DEBUG); without,
    leave logging as it is. Other libraries' loggers stay at WARNING.

    Left alone, Python prints warnings and errors on stderr anyway, and ``gateway serve``
    keeps its own log format at ``server.log_level``.
    """
    if verbose > 0:
        logging.basicConfig(format="gateway: %(levelname)s: %(name)s: %(message)s")
        logging.getLogger("gateway").setLevel(log_level(verbose))


COMMANDS: list[click.Command] = [
    me.whoami,
    profilecmds.profile_group,
    *keycmds.COMMANDS,
    *labpush.COMMANDS,  # push, with --custody lab (it keeps every option of transfer's)
    *pullcmd.COMMANDS,
    *omskeys.COMMANDS,
    uploads.uploads,
    *listings.COMMANDS,
    *access.COMMANDS,
    *ending.COMMANDS,
    *signingkeys.COMMANDS,
]


def build(
    commands: Sequence[click.Command] = (),
    audit_commands: Sequence[click.Command] = (),
    params: Sequence[click.Parameter] = (),
) -> click.Group:
    """A new ``gateway`` group: the client's commands and ``audit`` group, plus those given.

    ``params`` are further root options; their values are in the root context's
    ``params`` for the commands that read them.
    """

    @click.group(
        "gateway",
        cls=GatewayGroup,
        context_settings=CONTEXT,
        commands=[*COMMANDS, audit.group([auditmine.mine, *audit_commands]), *commands],
        params=list(params),
    )
    @click.option(
        "-v",
        "--verbose",
        count=True,
        help="say more on stderr: -v retries and progress notes, -vv every request",
    )
    @click.option(
        "--ca-cert",
        "ca_cert",
        default=None,
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM) for the gateway's TLS certificate "
        "(else $GATEWAY_CA_CERT, the profile's ca_cert, $REQUESTS_CA_BUNDLE, the public CAs)",
    )
    @click.version_option(package_name=DISTRIBUTION, prog_name="gateway")
    def gateway(verbose: int, **_root_options: Any) -> None:
        """Secure model-artifact transfer gateway."""
        configure_logging(verbose)

    return gateway


main = build()
"""The client alone (``python -m gateway.client``); the ``gateway`` command is :data:`gateway.cli.main`."""
