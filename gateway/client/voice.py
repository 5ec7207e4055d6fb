"""click's own errors (a missing argument, an unknown option, a bad value) in age's voice.

click prints ``Usage: ...`` and ``Error: Invalid value ...``; the ``gateway`` group
instead says ``gateway: error: invalid value ...`` and ``gateway: hint: see `gateway
pull --help` `` on stderr, with click's status (2 for a usage error), as every other
failure of the command does (:mod:`gateway.tui`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import click

from gateway.tui import fail

USAGE = 2


def phrase(message: str) -> str:
    """click's sentences as one message: lowercase words after each colon, sentences joined
    with semicolons, no trailing period (``Invalid value ...: File 'x' does not exist.``
    becomes ``invalid value ...: file 'x' does not exist``)."""
    text = " ".join(message.split()).rstrip(".")
    text = re.sub(r"\. (?=[A-Z])", "; ", text)
    return re.sub(r"(^|: |; )([A-Z])(?=[a-z])", lambda m: m.group(1) + m.group(2).lower(), text)


class GatewayGroup(click.Group):
    """The root group: its usage errors are one ``gateway: error:`` line and a hint."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            fail("nothing was done (aborted)", code=1)
        except click.exceptions.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "gateway"
            fail(phrase(exc.format_message()), hint=f"see `{where} --help`", code=exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)
