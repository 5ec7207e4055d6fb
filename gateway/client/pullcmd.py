"""``gateway pull``: checked before the first byte, explained when it stops.

Before anything is fetched: the output may be written (:func:`pullout.check_output`),
the lab's signed manifest is this artifact's and verifies under a pinned key, the
identity holds the recipient the key goes to (the grant's, if its key was released; the
registered one otherwise), and there is room for the file. A refusal says why: the
lab's reason for a denial, a request still pending, a grant that ended.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.client import agehdr, dirpull, lookup, trust
from gateway.client import pull as pulling
from gateway.client.agehdr import Identities
from gateway.client.base import api_for, profile_option
from gateway.client.errors import AgeKeyError, ClientError, InvocationError, UntrustedManifest
from gateway.client.http import Api, ApiError
from gateway.client.pullout import PullCommand, check_output, check_room, stopped
from gateway.orgname import is_name
from gateway.tui import reported, say

CREDENTIAL_LIMIT = 1 << 20


def _my_grant(api: Api, artifact: str) -> dict[str, Any] | None:
    for grant in api.items("/v1/grants", artifact=artifact):
        if grant.get("artifact") == artifact and grant.get("state") == "active":
            return grant
    return None


def check_identity(api: Api, artifact: str, path: Path, identities: Identities) -> None:
    """Refuse an identity that does not hold the recipient the artifact's key goes to."""
    held = {str(i.to_recipient()) for i in identities}  # type: ignore[attr-defined]
    registered = api.get("/v1/me").get("recipient")
    grant = _my_grant(api, artifact)
    released = grant.get("recipient") if grant else None
    again = f"gateway keygen --register-existing {path}"
    if released and released not in held:
        raise AgeKeyError(
            f"the key of grant {grant['id'] if grant else ''} was released to {released}, "
            f"which {path} does not hold",
            hint="pull with the identity file that holds it (-i FILE); if it is not your "
            "registered recipient any more, register it again first: "
            "gateway keygen --register-existing FILE",
        )
    if released and released != registered:
        raise AgeKeyError(
            f"the key of grant {grant['id'] if grant else ''} went to {released}, which is no "
            "longer your registered recipient, and it is never released twice",
            hint=f"register it again, then pull: {again}",
        )
    if not released and not registered:
        raise AgeKeyError(
            "you have no registered recipient: the gateway has nowhere to release the key",
            hint=f"register this identity: {again}",
        )
    if not released and registered not in held:
        raise AgeKeyError(
            f"{path} does not hold your registered recipient {registered}, to which the "
            "gateway will release the key",
            hint=f"give the identity file of {registered} with -i, or register this one: {again}",
        )


def access_hint(api: Api, artifact: str) -> str | None:
    """Why an evaluator has no access to ``artifact``, from its own requests, newest first."""
    try:
        mine = list(api.items("/v1/access-requests", artifact=artifact))
    except ApiError:
        return None
    mine = [r for r in mine if r.get("artifact") == artifact]
    if not mine:
        return f'ask for access: gateway request {artifact} --justification "..."'
    last = mine[0]
    if last.get("state") == "pending":
        return f"your request {last['id']} is pending: the lab has not decided it yet"
    if last.get("state") == "denied":
        reason = f", saying: {last['reason']}" if last.get("reason") else " (no reason given)"
        return f"the lab denied your request {last['id']}{reason}"
    return f"your grant from request {last['id']} has ended; ask again with `gateway request`"


@click.command("pull")
@click.argument("artifact")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    help="output file (a new directory for a directory artifact); '-' prints a credential",
)
@click.option(
    "-i",
    "--identity",
    "identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="GATEWAY_IDENTITY",
    help="your age identity file, or $GATEWAY_IDENTITY (not needed with --raw)",
)
@click.option("--raw", is_flag=True, help="keep the age file as it is, for the age program")
@click.option("--force", is_flag=True, help="replace an existing output file, once verified")
@click.option(
    "--trust-new-key",
    is_flag=True,
    help="accept a lab signing key, or OpenSSF model signing material, not seen before here",
)
@click.option(
    "--expect-org",
    "expect_org",
    default=None,
    metavar="ORG",
    help="refuse the artifact unless its lab is ORG (the organisation you expect it from)",
)
@click.option(
    "--oms-key",
    "oms_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a directory artifact with model.sig: verify its OpenSSF model signature under "
    "this public key (PEM) instead of the keys the lab registered with the gateway",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
@profile_option
@reported(ClientError)
def pull(
    profile: str | None,
    artifact: str,
    output: str,
    identity: Path | None,
    raw: bool,
    force: bool,
    trust_new_key: bool,
    expect_org: str | None,
    oms_key: Path | None,
    quiet: bool,
) -> None:
    """Download ARTIFACT, decrypt it, check the lab's signed manifest, then write it.

    Nothing is written at the output name until the file is verified: it grows in
    FILE.part (mode 0600), which a pull run again resumes. A directory artifact
    (`gateway push DIR`) is restored into -o DIR, new or empty: each file gets its
    name only once it matches the manifest; DIR/.gateway-incoming/ marks an
    unfinished pull, which a pull run again resumes. A directory that carries an
    OpenSSF model signature (model.sig) is checked under the keys its lab registered
    (`gateway oms-key register`), or under --oms-key PUB when given.

    The lab's signing keys (and OpenSSF model signing material) are pinned on this
    machine the first time its organisation is met, which is said with the key's
    fingerprint; a key met later needs --trust-new-key, and a revoked one is refused.
    --expect-org ORG refuses an artifact of any other organisation.
    """
    if expect_org is not None and not is_name(expect_org):
        raise InvocationError(f"--expect-org {ascii(expect_org)} is not an organisation name")
    if output == "-" and raw:
        raise InvocationError("--raw writes a file; give -o FILE")
    if not raw and identity is None:
        raise InvocationError(
            "an age identity is needed to decrypt", hint="give it with -i FILE, or pull with --raw"
        )
    api = api_for(profile)
    artifact = lookup.resolve(api, artifact, "art")
    info = api.get(f"/v1/artifacts/{artifact}")
    org = trust.check_org(info.get("org"))
    if expect_org is not None and org != expect_org:
        raise UntrustedManifest(
            f"artifact {artifact} is {org}'s, not {expect_org}'s as --expect-org says"
        )
    manifest, signature = info.get("manifest") or {}, info.get("signature") or ""
    tree = dirpull.is_tree(manifest) and not raw
    if tree:
        target = None if output == "-" else dirpull.check_directory(output)
    else:
        target = None if output == "-" else check_output(output, force=force)
    if oms_key is not None and not tree:
        raise InvocationError("--oms-key checks a directory artifact's model signature")
    trust.check_binding(info, manifest)
    trust.check_manifest(api, org, manifest, signature, trust_new=trust_new_key)
    trust.check_shape(manifest)
    identities = agehdr.load_identities(identity) if identity is not None else []
    if identity is not None and not raw:
        check_identity(api, artifact, identity, identities)
    if target is None:
        _print_credential(api, info, identities)
        return
    command = PullCommand(artifact, target, identity, raw, force, profile)
    total = pulling.whole(info.get("size"), "size") if raw else manifest["plaintext"]["size"]
    check_room(target, total)
    if tree:
        dirpull.pull_command(api, info, identities, command, quiet, oms_key, trust_new_key)
        return
    try:
        _pull_to(api, info, identities, command, quiet)
    except (ClientError, KeyboardInterrupt) as exc:
        if isinstance(exc, ApiError) and exc.status == 403 and exc.hint is None:
            exc.hint = access_hint(api, artifact)
        raise stopped(exc, command, total) from None


def _pull_to(
    api: Api, info: dict[str, Any], identities: Identities, command: PullCommand, quiet: bool
) -> None:
    progress = False if quiet else None
    out, artifact = command.output, str(info["id"])
    partial = pulling.part_path(out)
    manifest = info.get("manifest") or {}
    if command.raw:
        total = pulling.download_raw(api, artifact, partial, progress, f"pull {info['name']} (age)")
        os.replace(partial, out)
        say(f"{out}: age file, {total} bytes; decrypt with `age -d -i IDENTITY {out}`")
        plain = manifest.get("plaintext", {})
        said = f"the lab's signed manifest says the plaintext is {plain.get('size')} bytes"
        if manifest.get("version") == 1:
            said += f", sha256 {plain.get('sha256')}"
        else:
            said += "; its commitment is keyed by the file key: pull without --raw to check it"
        say(said)
        return
    digest = pulling.digest_for(manifest)
    size, checked = pulling.decrypt_to(
        api, artifact, identities, partial, progress, f"pull {info['name']}", digest_for=digest
    )
    pulling.check_plaintext(manifest, size, checked)
    os.replace(partial, out)
    what = "sha256" if manifest.get("version") == 1 else "keyed commitment"
    say(
        f"{out}: {size} bytes, {what} {checked}: {manifest.get('name')} "
        f"(upload {manifest.get('upload')}), signed by {info['org']}"
    )


def _print_credential(api: Api, info: dict[str, Any], identities: Identities) -> None:
    """Decrypt a (small) credential in memory; print it only once it is verified."""
    if (
        info.get("kind") != "credential"
        or pulling.whole(info.get("size"), "size") > CREDENTIAL_LIMIT
    ):
        raise InvocationError(
            f"only a credential can be printed, and {info.get('name')} is {info.get('kind')}",
            hint="give -o FILE",
        )
    sink = io.BytesIO()
    manifest = info.get("manifest") or {}
    digest = pulling.digest_for(manifest)
    try:
        size, checked = pulling.decrypt_stream(api, info["id"], identities, sink, digest_for=digest)
    except ApiError as exc:
        if exc.status == 403 and exc.hint is None:
            exc.hint = access_hint(api, str(info["id"]))
        raise
    pulling.check_plaintext(manifest, size, checked)
    sys.stdout.buffer.write(sink.getvalue())
    sys.stdout.flush()


COMMANDS: list[click.Command] = [pull]
