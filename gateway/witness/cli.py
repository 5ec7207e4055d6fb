"""``gateway witness``: run a witness (``serve``) and make its keys (``keygen``, ``vkeys``).

Messages in the voice of ``age``: ``gateway: error: ...`` and ``gateway: hint: ...``,
lowercase, no traceback, non-zero exit status on failure. The group stands alone (it imports
nothing of the gateway server), so a lab or an oversight body can run just the witness.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gateway.audit import cosignature, note, sigtypes
from gateway.errors import GatewayError
from gateway.witness.app import max_body_limit
from gateway.witness.loglist import LogListError
from gateway.witness.state import MAX_STATE_BYTES

F = TypeVar("F", bound=Callable[..., Any])
_TYPES = {"mldsa44": sigtypes.SIG_MLDSA44_COSIGNATURE, "ed25519": sigtypes.SIG_COSIGNATURE_V1}


def fail(message: str, hint: str | None = None) -> NoReturn:
    click.echo(f"gateway: error: {message}", err=True)
    if hint:
        click.echo(f"gateway: hint: {hint}", err=True)
    sys.exit(1)


def reported(fn: F) -> F:
    """Turn key, log-list, state and OS errors into one-line messages."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileExistsError as exc:
            fail(
                f"{exc.filename} already exists", "keys are never overwritten; choose another path"
            )
        except (note.NoteError, LogListError, ValueError) as exc:
            fail(str(exc))
        except GatewayError as exc:
            fail(exc.diagnostics())
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))

    return wrapper  # type: ignore[return-value]


@click.group("witness")
def witness() -> None:
    """A C2SP tlog-witness: cosign the checkpoints of the logs it lists, never two forks."""


@witness.command()
@click.option("--name", required=True, help="the witness's name, e.g. witness.example.org/w1")
@click.option("-o", "--output", "path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(sorted(_TYPES)),
    help="cosignature types (default: mldsa44 and ed25519)",
)
@reported
def keygen(name: str, path: Path, types: tuple[str, ...]) -> None:
    """Make a witness key file (mode 0600) and print its verifier keys."""
    chosen = [_TYPES[t] for t in types] if types else list(cosignature.COSIGNATURE_TYPES)
    for c in cosignature.create_cosigner_file(path, name, dict.fromkeys(chosen)):
        click.echo(c.verifier_key)
    click.echo(f"gateway: witness key written to {path}", err=True)


@witness.command()
@click.option("--key", "path", required=True, type=click.Path(path_type=Path))
@reported
def vkeys(path: Path) -> None:
    """Print the verifier keys of a witness key file, for policies and log configuration."""
    for c in cosignature.load_cosigners(path):
        click.echo(c.verifier_key)


@witness.command()
@click.option("--key", required=True, type=click.Path(path_type=Path), help="witness key file")
@click.option("--state", required=True, type=click.Path(path_type=Path), help="state directory")
@click.option(
    "--logs",
    type=click.Path(path_type=Path),
    help="log list in logs/v0 format (default: STATE/logs)",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--max-body",
    default=256 * 1024,
    show_default=True,
    type=click.IntRange(1024, max_body_limit(MAX_STATE_BYTES)),
    help="largest add-checkpoint body, in bytes",
)
@click.option(
    "--request-timeout",
    default=10,
    show_default=True,
    type=click.IntRange(1, 300),
    help="seconds a client has to send a whole request",
)
@click.option(
    "--io-timeout",
    default=5,
    show_default=True,
    type=click.IntRange(1, 300),
    help="seconds any one read from or write to a client may wait",
)
@reported
def serve(key: Path, state: Path, logs: Path | None, **limits: Any) -> None:
    """Serve add-checkpoint and the cosigned checkpoints over HTTP."""
    if not key.is_file():
        fail(
            f"no witness key at {key}", "make one with `gateway witness keygen --name NAME -o FILE`"
        )
    log_list = logs or state / "logs"
    if not log_list.is_file():
        fail(f"no log list at {log_list}", "write one in logs/v0 format: see README")
    if limits["io_timeout"] > limits["request_timeout"]:
        fail("--io-timeout must be at most --request-timeout")
    try:  # the HTTP server is the server install's; the rest of the client runs without it
        from gateway.witness.server import ServeOptions, run
    except ModuleNotFoundError:
        fail("`gateway witness serve` needs the server install: "
             "pip install 'model-artifact-gateway[server]'")  # fmt: skip
    run(ServeOptions(key, state, log_list, **limits))


def main() -> None:
    witness(prog_name="gateway witness")
