"""Transfer commands: ``push`` and ``pull``.

Both check what can be checked before the first byte moves (push: that the signing key
is registered, so a wrong key is not found out after the whole upload; pull: where the
output goes, the room for it, that the identity holds the recipient the key goes to),
and when they stop part-way they say what was kept, where, and the command that
resumes (:mod:`gateway.client.pullout`, :func:`push_stopped`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from gateway.client import agehdr, dirpush, humane, keys, state
from gateway.client import push as pushing
from gateway.client.base import api_for, emit_json, json_option, profile_option
from gateway.client.errors import ClientError, InvocationError, PushError, TransferStopped
from gateway.client.http import Api, ApiError
from gateway.tui import hint, out, reported, say

CREDENTIAL_LIMIT = 1 << 20
INTERRUPTED = 130


def check_signing_key(api: Api, path: Path, public: str) -> None:
    """Refuse a push whose signing key the lab's organisation has not registered."""
    org = str(api.get("/v1/me").get("org"))
    listed = {str(k.get("public_key")) for k in api.get(f"/v1/orgs/{org}/signing-keys")["items"]}
    if public not in listed:
        raise PushError(
            f"{path} is not a signing key registered for {org}: the gateway would refuse "
            "the upload once every part was sent",
            hint=f"register it first: gateway keygen --register-existing {shlex.quote(str(path))}",
        )


def _read_stdin(kind: str) -> bytes:
    if kind != "credential":
        raise InvocationError("only a credential can be pushed from standard input (-)")
    data = sys.stdin.buffer.read(CREDENTIAL_LIMIT + 1)
    if len(data) > CREDENTIAL_LIMIT:
        raise InvocationError(
            f"standard input holds more than {humane.size(CREDENTIAL_LIMIT)}: push a file instead"
        )
    return data


def push_request(
    file: str | None, resume: str | None, name: str | None, kind: str, **rest: Any
) -> pushing.PushRequest:
    """What FILE (or stdin, or --resume UPLOAD alone) asks to push; a usage error if nothing."""
    if file is None:
        if not resume:
            raise InvocationError("give the FILE or DIR to push (or --resume UPLOAD)")
        file = state.find(resume).file.path
    data = _read_stdin(kind) if file == pushing.STDIN else None
    if data is not None and not name:
        raise InvocationError("a push from standard input needs --name")
    path = Path(file)
    if data is None and not (path.is_file() or path.is_dir()):
        raise InvocationError(
            f"{path}: no such file or directory"
            if not path.exists()
            else f"{path}: not a regular file or directory"
        )
    return pushing.PushRequest(path=path, name=name or path.name, kind=kind, data=data, **rest)


def push_stopped(
    exc: BaseException, run: pushing.PushRun, key: Path, profile: str | None
) -> ClientError:
    """What a push that stopped says: its upload, the parts stored, the command that resumes."""
    if isinstance(exc, ClientError) and run.saved is None:
        return exc
    detail = exc.detail if isinstance(exc, ClientError) else "interrupted"
    if run.saved is None:
        return TransferStopped(detail, exit_code=INTERRUPTED)
    held = f"upload {run.saved.upload} holds {run.stored} of {run.parts or '?'} parts"
    if run.saved.file.path == pushing.STDIN:
        return TransferStopped(f"{detail}; the upload was aborted (stdin cannot be re-read)")
    words = ["gateway", "push", "--resume", run.saved.upload, "--signing-key", str(key)]
    words += ["--profile", profile] if profile else []
    again = f"run the same command again, or `{shlex.join(words)}`, to send only what is missing"
    if isinstance(exc, ApiError) and exc.status == 507:
        return TransferStopped(
            f"the gateway is out of space, or your organisation is over its quota: {detail}; {held}",
            hint=f"once there is room, {again}",
        )
    if isinstance(exc, ApiError) and (exc.lasting or not (exc.retryable or exc.status == 0)):
        return TransferStopped(f"{detail}; {held}", hint=exc.hint)
    code = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else 1
    return TransferStopped(f"{detail}; {held}", hint=again, exit_code=code)


@click.command("push")
@click.argument("file", required=False, metavar="[FILE|DIR]")
@click.option(
    "--name", default=None, help="artifact name (default: the file's or directory's name)"
)
@click.option(
    "--kind",
    type=click.Choice(["weights", "credential"]),
    default=None,
    help="weights (the default) or credential (an evaluator can print it with `pull -o -`; "
    "the default for FILE -)",
)
@click.option(
    "--share-with",
    "share_with",
    multiple=True,
    metavar="AGENCY",
    help="agency organisation that may request access (repeatable)",
)
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    metavar="AGE1...",
    help="also encrypt to this age recipient, e.g. the lab's own copy (repeatable)",
)
@click.option(
    "--signing-key",
    "signing_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GATEWAY_SIGNING_KEY",
    required=True,
    help="the lab's Ed25519 signing key file (or $GATEWAY_SIGNING_KEY)",
)
@click.option("--description", default=None, help="a description evaluators see")
@click.option(
    "--oms-key",
    "oms_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="DIR only: sign it first with OpenSSF Model Signing under this EC private key (PEM); "
    "model.sig then travels in the archive",
)
@click.option(
    "--resume", "resume", default=None, metavar="UPLOAD", help="resume this interrupted upload"
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="parts in flight (memory: jobs x part size)",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
@profile_option
@json_option
@reported(ClientError)
def push(
    profile: str | None,
    as_json: bool,
    file: str | None,
    name: str | None,
    kind: str | None,
    share_with: tuple[str, ...],
    recipients: tuple[str, ...],
    signing_key: Path,
    description: str | None,
    oms_key: Path | None,
    resume: str | None,
    jobs: int,
    quiet: bool,
) -> None:
    """Encrypt FILE here, upload the ciphertext, sign its manifest; prints the artifact id.

    A directory DIR (a model: shards, index, config, tokenizer) goes as one
    artifact, a tar archive encrypted as it is read, each file's commitment in the
    signed manifest; `gateway pull ART -o DIR` restores it, verifying every file.
    Symbolic links, devices and hard links in DIR are refused; .git is left out.

    FILE - reads a credential from standard input (up to 1 MiB; --name needed),
    so it never sits in a file. An interrupted push resumes by itself when run
    again with the same FILE (or with --resume UPLOAD, FILE then optional): only
    the missing parts are sent. `gateway uploads` lists interrupted pushes. The
    push state (the upload id and the age file key) is kept, mode 0600, in
    $XDG_CONFIG_HOME/gateway/pushes/ (~/.config by default) until it completes.
    """
    chosen = kind or ("credential" if file == pushing.STDIN else "weights")
    if not share_with and not resume:
        raise InvocationError("--share-with AGENCY is required: who may ask for access")
    for recipient in recipients:
        agehdr.check_recipient(recipient)
    sign, public = keys.load_signing(signing_key)
    req = push_request(
        file,
        resume,
        name,
        chosen,
        share_with=share_with,
        recipients=recipients,
        description=description,
        jobs=jobs,
        progress=False if quiet else None,
        oms_key=oms_key,
    )
    if oms_key is not None and not req.path.is_dir():
        raise InvocationError("--oms-key signs a directory: give DIR, not a file")
    api = api_for(profile, pool=jobs + 2)
    check_signing_key(api, signing_key, public)
    run = pushing.PushRun()
    try:
        if req.data is None and req.path.is_dir() and not req.path.is_symlink():
            artifact = dirpush.push_directory(api, req, sign, resume=resume, note=say, run=run)
        else:
            artifact = pushing.push(api, req, sign, resume=resume, note=say, run=run)
    except (ClientError, KeyboardInterrupt) as exc:
        raise push_stopped(exc, run, signing_key, profile) from None
    if as_json:
        emit_json(artifact)
        return
    say_pushed(req, artifact, defaulted=kind is None)


def say_pushed(req: pushing.PushRequest, artifact: dict[str, Any], *, defaulted: bool) -> None:
    """The artifact's id on stdout; its name, kind, size and who it is shared with on stderr."""
    out(artifact["id"])
    shared = ", ".join(artifact.get("share_with") or req.share_with) or "nobody"
    plain = (artifact.get("manifest") or {}).get("plaintext") or {}
    tree = "files" in plain
    size = humane.size(int(plain["size"]) if tree else req.identity().size)
    if tree:
        size += f" in {len(plain['files'])} files"
    say(
        f"pushed {req.name} ({artifact.get('kind', req.kind)}, {size}) as artifact "
        f"{artifact['id']}, shared with {shared}"
    )
    if defaulted and not tree and req.kind == "weights" and req.identity().size <= CREDENTIAL_LIMIT:
        hint(
            "pushed as weights, the default; a credential, which an evaluator can print with "
            "`gateway pull ... -o -`, is pushed with --kind credential"
        )


COMMANDS: list[click.Command] = [push]
