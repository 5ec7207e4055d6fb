"""What the ``gateway`` command says at the terminal, in the voice of ``age``.

Design note. As age's ``cmd/age/tui.go``: every message is one line on stderr,
``gateway: error: ...`` or ``gateway: hint: ...`` (lowercase, no trailing period), and
a failure ends the process with a non-zero status and never a traceback. Both the
operator commands (:mod:`gateway.cli`) and the client (:mod:`gateway.client.cli`) speak
through this module, which imports nothing of theirs: stdout stays for data.

:func:`reported` turns the errors a command may meet into those lines: the gateway's
own (:class:`gateway.errors.GatewayError`) and whatever further kinds the caller names
(the client's errors, configuration errors), each told by its ``diagnostics()`` (or
``str``) with its ``hint`` when it has one; an ``OSError`` with the path it concerns;
an interrupt with status 130, as a shell reports SIGINT.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar

import click

from gateway.errors import GatewayError

P = ParamSpec("P")
R = TypeVar("R")

PREFIX = "gateway"
INTERRUPTED = 130


def say(message: str) -> None:
    """A line for the person at the terminal: ``gateway: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: {message}", err=True)


def error(message: str) -> None:
    """``gateway: error: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: error: {message}", err=True)


def hint(message: str) -> None:
    """``gateway: hint: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: hint: {message}", err=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Say what went wrong (and what to try), then end the command with status ``code``."""
    error(message)
    if hint:
        click.echo(f"{PREFIX}: hint: {hint}", err=True)
    raise SystemExit(code)


def diagnostics(exc: BaseException) -> str:
    """The one line an error is told by: its ``diagnostics()`` when it has one, else ``str``."""
    told = getattr(exc, "diagnostics", None)
    return str(told()) if callable(told) else str(exc)


def os_message(exc: OSError) -> str:
    """``PATH: reason`` for an error about a file, else the error's own text."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def reported(*kinds: type[Exception]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: a command's errors of ``kinds`` (and the gateway's own) as one-line messages.

    ``OSError`` is reported with its path and ``KeyboardInterrupt`` with status 130;
    anything else is a bug and keeps its traceback.
    """
    caught: tuple[type[Exception], ...] = (GatewayError, *kinds)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except caught as exc:
                fail(diagnostics(exc), hint=_hint_of(exc))
            except OSError as exc:
                fail(os_message(exc))
            except KeyboardInterrupt:
                fail("interrupted", code=INTERRUPTED)

        return wrapper

    return decorate


def _hint_of(exc: BaseException) -> str | None:
    value = getattr(exc, "hint", None)
    return value if isinstance(value, str) and value else None
