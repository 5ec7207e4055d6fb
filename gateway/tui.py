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

Nothing a gateway sends reaches the terminal as it was sent: :func:`shown` is the one
function every server string (names, justifications, reasons, ids, an error's
``detail``) goes through, and every line this module prints goes through it too. It
shows control characters (C0, C1), bidirectional overrides and isolates, zero-width and
other format characters, and every other character that does not print as itself, as
Python escapes (``\\x1b``, ``\\u202e``), so a name cannot move the cursor, restyle the
screen, hide text or reverse a line. Rich markup is never interpreted in what it
returns: callers hand it to rich as :class:`rich.text.Text`, never as markup.
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


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: object) -> str:
    """``value`` as text fit for a terminal: every character that does not print as itself escaped.

    Escaped are the characters :meth:`str.isprintable` refuses, which are Unicode's
    "Other" and "Separator" categories but the ASCII space: C0 and C1 controls (ESC,
    NUL, newlines), format characters (the bidirectional overrides U+202A-202E and
    isolates U+2066-2069, zero-width spaces and joiners, soft hyphens), line and
    paragraph separators, other spaces, surrogates, private-use and unassigned code
    points.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def out(line: object = "") -> None:
    """A line of data on stdout, shown safely (:func:`shown`)."""
    click.echo(shown(line))


def say(message: str) -> None:
    """A line for the person at the terminal: ``gateway: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: {shown(message)}", err=True)


def error(message: str) -> None:
    """``gateway: error: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: error: {shown(message)}", err=True)


def hint(message: str) -> None:
    """``gateway: hint: MESSAGE`` on stderr."""
    click.echo(f"{PREFIX}: hint: {shown(message)}", err=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Say what went wrong (and what to try), then end the command with status ``code``."""
    error(message)
    if hint:
        click.echo(f"{PREFIX}: hint: {shown(hint)}", err=True)
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
                code = getattr(exc, "exit_code", 1)
                fail(
                    diagnostics(exc), hint=_hint_of(exc), code=code if isinstance(code, int) else 1
                )
            except OSError as exc:
                fail(os_message(exc))
            except KeyboardInterrupt:
                fail("interrupted", code=INTERRUPTED)

        return wrapper

    return decorate


def _hint_of(exc: BaseException) -> str | None:
    value = getattr(exc, "hint", None)
    return value if isinstance(value, str) and value else None
