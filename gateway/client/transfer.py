"""Transfer commands: ``keygen``, ``push``, ``pull``."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.client import agehdr, keys, possession, state, trust
from gateway.client import pull as pulling
from gateway.client import push as pushing
from gateway.client.agehdr import Identities
from gateway.client.base import api_for, emit_json, json_option, profile_option
from gateway.client.errors import ClientError, InvocationError, PullError
from gateway.client.http import Api
from gateway.tui import reported, say

CREDENTIAL_LIMIT = 1 << 20


@click.command("keygen")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="where to write the private key (created 0600; never overwritten)",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["auto", "age", "signing"]),
    default="auto",
    help="age identity (evaluators) or Ed25519 signing key (labs); auto: by your role",
)
@click.option(
    "--no-register", is_flag=True, help="only write the key; do not register its public half"
)
@profile_option
@reported(ClientError)
def keygen(profile: str | None, output: Path, key_type: str, no_register: bool) -> None:
    """Make a key pair, keep the private half in a 0600 file, register the public half."""
    api = None if no_register else api_for(profile)
    if key_type == "auto":
        if api is None:
            raise InvocationError("--type is needed with --no-register")
        role = api.get("/v1/me").get("role")
        key_type = {"evaluator": "age", "lab": "signing"}.get(str(role), "")
        if not key_type:
            raise InvocationError(f"a {role} registers no key; pass --type to make one anyway")
    if key_type == "age":
        public = keys.write_age_identity(output)
        if api is not None:
            api.put("/v1/me/recipient", {"recipient": public})
    else:
        public = keys.write_signing_key(output)
        if api is not None:
            possession.register(api, output)
    click.echo(public)
    say(f"private key written to {output}" + ("" if api is None else "; public key registered"))


@click.command("push")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option("--name", default=None, help="artifact name (default: the file's name)")
@click.option("--kind", type=click.Choice(["weights", "credential"]), default="weights")
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
    help="the lab's Ed25519 signing key file",
)
@click.option("--description", default=None)
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
    file: Path | None,
    name: str | None,
    kind: str,
    share_with: tuple[str, ...],
    recipients: tuple[str, ...],
    signing_key: Path,
    description: str | None,
    resume: str | None,
    jobs: int,
    quiet: bool,
) -> None:
    """Encrypt FILE here, upload the ciphertext, sign its manifest; prints the artifact id.

    An interrupted push resumes by itself when run again with the same FILE (or with
    --resume UPLOAD, FILE then optional): only the missing parts are sent.
    """
    if file is None:
        if not resume:
            raise InvocationError("give the FILE to push (or --resume UPLOAD)")
        file = Path(state.find(resume).file.path)
    if not share_with and not resume:
        raise InvocationError("--share-with AGENCY is required: who may ask for access")
    for recipient in recipients:
        agehdr.check_recipient(recipient)
    sign = keys.load_signer(signing_key)
    api = api_for(profile, pool=jobs + 2)
    req = pushing.PushRequest(
        path=file,
        name=name or file.name,
        kind=kind,
        share_with=share_with,
        recipients=recipients,
        description=description,
        jobs=jobs,
        progress=False if quiet else None,
    )
    artifact = pushing.push(api, req, sign, resume=resume, note=say)
    if as_json:
        emit_json(artifact)
        return
    click.echo(artifact["id"])
    say(f"pushed {req.name} as artifact {artifact['id']}, shared with {', '.join(share_with)}")


@click.command("pull")
@click.argument("artifact")
@click.option(
    "-o", "--output", "output", required=True, help="output file; '-' prints a credential"
)
@click.option(
    "-i",
    "--identity",
    "identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GATEWAY_IDENTITY",
    help="your age identity file (not needed with --raw)",
)
@click.option("--raw", is_flag=True, help="keep the age file as it is, for the age program")
@click.option("--trust-new-key", is_flag=True, help="accept a lab signing key not seen before here")
@click.option("--quiet", is_flag=True, help="no progress bar")
@profile_option
@reported(ClientError)
def pull(
    profile: str | None,
    artifact: str,
    output: str,
    identity: Path | None,
    raw: bool,
    trust_new_key: bool,
    quiet: bool,
) -> None:
    """Download ARTIFACT, decrypt it, check the lab's signed manifest, then write it."""
    api = api_for(profile)
    info = api.get(f"/v1/artifacts/{artifact}")
    progress = False if quiet else None
    manifest, signature = info.get("manifest") or {}, info.get("signature") or ""
    trust.check_manifest(api, info["org"], manifest, signature, trust_new=trust_new_key)
    if raw:
        _pull_raw(api, artifact, output, progress)
        plain = manifest.get("plaintext", {})
        say(
            f"the lab's signed manifest says the plaintext is {plain.get('size')} bytes, "
            f"sha256 {plain.get('sha256')}"
        )
        return
    if identity is None:
        raise InvocationError(
            "an age identity is needed to decrypt", hint="give it with -i FILE, or pull with --raw"
        )
    identities = agehdr.load_identities(identity)
    if output == "-":
        _print_credential(api, info, identities)
        return
    out = Path(output)
    partial = pulling.part_path(out)
    size, sha = pulling.decrypt_to(
        api, artifact, identities, partial, progress, f"pull {info['name']}"
    )
    try:
        pulling.check_plaintext(manifest, size, sha)
    except PullError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    say(f"{out}: {size} bytes, sha256 {sha}, signed by {info['org']}")


def _pull_raw(api: Api, artifact: str, output: str, progress: bool | None) -> None:
    if output == "-":
        raise InvocationError("--raw writes a file; give -o FILE")
    out = Path(output)
    partial = pulling.part_path(out)
    total = pulling.download_raw(api, artifact, partial, progress, f"pull {artifact} (age)")
    os.replace(partial, out)
    say(f"{out}: age file, {total} bytes; decrypt with `age -d -i IDENTITY {out}`")


def _print_credential(api: Api, info: dict[str, Any], identities: Identities) -> None:
    """Decrypt a (small) credential in memory; print it only once it is verified."""
    if info.get("kind") != "credential" or int(info.get("size") or 0) > CREDENTIAL_LIMIT:
        raise InvocationError("only a credential can be printed; give -o FILE")
    sink = io.BytesIO()
    size, sha = pulling.decrypt_stream(api, info["id"], identities, sink)
    pulling.check_plaintext(info.get("manifest") or {}, size, sha)
    sys.stdout.buffer.write(sink.getvalue())
    sys.stdout.flush()


COMMANDS = [keygen, push, pull]
