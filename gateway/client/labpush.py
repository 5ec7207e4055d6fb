"""``gateway push --custody lab``: an artifact only the lab's own identity opens.

``-r AGE1...`` encrypts here to the lab's recipients only (the gateway makes no
recipient), through the ordinary push (:mod:`gateway.client.push`, resumable); a
directory goes as one archive, as any directory push (:mod:`gateway.client.dirpush`,
resumable, ``--oms-key`` signing it first).
``--encrypted FILE.age -i LAB_IDENTITY`` sends a file already made by ``age``: its
header is opened with the identity (the MAC checked), the payload decrypted as it is read
to compute manifest v2's keyed commitment (never whole in memory), then the ciphertext
sent as it is, part by part. Every grant's header is then made by the lab when it
approves (``gateway approve REQUEST -i LAB_IDENTITY``).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from gateway import age
from gateway import manifest as manifests
from gateway.client import agehdr, dirpush, keys, transfer, trust
from gateway.client import push as pushing
from gateway.client.base import api_for, emit_json
from gateway.client.errors import ClientError, InvocationError, PushError
from gateway.client.http import Api
from gateway.client.parts import PartSender, send_parts
from gateway.client.progress import Meter
from gateway.tui import out, reported, say

READ = 1 << 20
MAX_HEADER = 1 << 20


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(READ):
            yield block


def commitment(path: Path, identities: agehdr.Identities) -> tuple[bytes, int, str, int]:
    """(file key, header length, keyed plaintext commitment, plaintext size) of an age file,
    decrypted as it is read; refuses a file the identities do not open or that is damaged."""
    with open(path, "rb") as fh:
        file_key, header_len = agehdr.open_header(fh, identities, MAX_HEADER)
    hasher, size = manifests.plaintext_hasher(file_key), 0
    try:
        for plain in age.decrypt_iter(_chunks(path), list(identities)):
            hasher.update(plain)
            size += len(plain)
    except age.AgeError as exc:
        raise PushError(f"{path}: the file does not decrypt: {exc}") from None
    return file_key, header_len, hasher.hexdigest(), size


def push_encrypted(
    api: Api,
    req: pushing.PushRequest,
    encrypted: Path,
    identities: agehdr.Identities,
    sign: Any,
) -> dict[str, Any]:
    """Upload an age file as it is, under lab custody; the artifact. Not resumable."""
    _, header_len, keyed, plain_size = commitment(encrypted, identities)
    with open(encrypted, "rb") as fh:
        header = fh.read(header_len)
    total = encrypted.stat().st_size
    body: dict[str, Any] = {
        "name": req.name,
        "kind": req.kind,
        "share_with": list(req.share_with),
        "size": total,
        "custody": "lab",
    }
    if req.description:
        body["description"] = req.description
    upload = api.post("/v1/uploads", body)
    part_size = pushing.server_int(upload.get("part_size"), "part size", least=1)
    try:
        with Meter(f"push {req.name}", total, enabled=req.progress) as meter:
            sender = PartSender(api, upload["id"], {}, meter.advance)
            digests = send_parts(_chunks(encrypted), part_size, sender, req.jobs)
        manifest = {
            "version": 2,
            "upload": upload["id"],
            "name": req.name,
            "kind": req.kind,
            "ciphertext": {
                "size": total,
                "part_size": part_size,
                "parts_sha256": hashlib.sha256(b"".join(digests)).hexdigest(),
            },
            "plaintext": {"size": plain_size, "commitment": keyed},
        }
        made: dict[str, Any] = api.post(
            f"/v1/uploads/{upload['id']}/complete",
            {"manifest": manifest, "signature": sign(manifest)},
        )
    except BaseException:
        api.delete(f"/v1/uploads/{upload['id']}")
        raise
    _recorded(api, made, header)
    return made


def _recorded(api: Api, artifact: dict[str, Any], header: bytes) -> None:
    """Keep the pushed header's SHA-256 here, which approvals of the artifact are held to."""
    digest = trust.record_lab_header(api.url, str(artifact["id"]), header)
    say(
        f"header SHA-256 {digest}: approvals from another machine need it "
        "(gateway approve REQUEST -i LAB_IDENTITY --header-sha256 HEX)"
    )


def _recipient_option() -> click.Option:
    return click.Option(
        ["-r", "--recipient", "recipients"],
        multiple=True,
        metavar="AGE1...",
        help="also encrypt to this age recipient, e.g. the lab's own copy (repeatable); "
        "with --custody lab, the lab's recipients: the only ones",
    )


EXTRA = [
    click.Option(
        ["--custody"],
        type=click.Choice(["gateway", "lab"]),
        default="gateway",
        show_default=True,
        help="lab: only the lab's own identity opens the artifact; the gateway holds no key, "
        "and each approval makes the grantee's header (gateway approve REQUEST -i IDENTITY)",
    ),
    click.Option(
        ["--encrypted"],
        type=click.Path(exists=True, path_type=Path),
        default=None,
        metavar="FILE.age",
        help="--custody lab: push this file, already encrypted by age to the lab's recipient "
        "(needs -i)",
    ),
    click.Option(
        ["-i", "--identity"],
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="--encrypted: the lab's age identity file that opens it",
    ),
]


@reported(ClientError)
def _lab(options: dict[str, Any], encrypted: Path | None, identity: Path | None) -> None:
    if options["resume"] is None and not options["share_with"]:
        raise InvocationError("--share-with AGENCY is required: who may ask for access")
    if encrypted is None:
        if not options["recipients"]:
            raise InvocationError(
                "--custody lab needs the lab's own recipient (-r AGE1...) or an age file "
                "(--encrypted FILE.age -i IDENTITY)"
            )
        _lab_recipients(options)
        return
    if encrypted.is_dir():
        raise InvocationError(
            f"--encrypted pushes one file made by age, and {encrypted} is a directory: "
            "push DIR --custody lab -r AGE1... encrypts a directory here"
        )
    if options.get("oms_key") is not None:
        raise InvocationError("--oms-key signs a directory; --encrypted pushes a file")
    if identity is None:
        raise InvocationError(
            "--encrypted needs -i LAB_IDENTITY: the manifest's commitment is keyed"
        )
    if options["file"] is not None or options["recipients"]:
        raise InvocationError("--encrypted pushes FILE.age as it is: give no FILE and no -r")
    identities = agehdr.load_identities(identity)
    sign, public = keys.load_signing(options["signing_key"])
    name = options["name"] or encrypted.name.removesuffix(".age")
    req = pushing.PushRequest(
        path=encrypted,
        name=name,
        kind=options["kind"] or "weights",
        share_with=options["share_with"],
        description=options["description"],
        jobs=options["jobs"],
        progress=False if options["quiet"] else None,
        custody="lab",
    )
    api = api_for(options["profile"], pool=options["jobs"] + 2)
    transfer.check_signing_key(api, options["signing_key"], public)
    artifact = push_encrypted(api, req, encrypted, identities, sign)
    if options["as_json"]:
        emit_json(artifact)
        return
    out(artifact["id"])
    say(
        f"pushed {name} under lab custody as artifact {artifact['id']}: only your identity opens it"
    )


def _lab_recipients(options: dict[str, Any]) -> None:
    for recipient in options["recipients"]:
        agehdr.check_recipient(recipient)
    sign, public = keys.load_signing(options["signing_key"])
    kind = options["kind"] or ("credential" if options["file"] == pushing.STDIN else "weights")
    req = transfer.push_request(
        options["file"],
        options["resume"],
        options["name"],
        kind,
        share_with=options["share_with"],
        recipients=options["recipients"],
        description=options["description"],
        jobs=options["jobs"],
        progress=False if options["quiet"] else None,
        oms_key=options["oms_key"],
        custody="lab",
    )
    tree = req.data is None and req.path.is_dir() and not req.path.is_symlink()
    if options["oms_key"] is not None and not tree:
        raise InvocationError("--oms-key signs a directory: give DIR, not a file")
    api = api_for(options["profile"], pool=options["jobs"] + 2)
    transfer.check_signing_key(api, options["signing_key"], public)
    run = pushing.PushRun()
    send = dirpush.push_directory if tree else pushing.push
    try:
        artifact = send(api, req, sign, resume=options["resume"], note=say, run=run)
    except (ClientError, KeyboardInterrupt) as exc:
        raise stopped(exc, run, options) from None
    assert run.saved is not None  # a push that returned an artifact saved its state first
    _recorded(api, artifact, run.saved.header_bytes)
    if options["as_json"]:
        emit_json(artifact)
        return
    transfer.say_pushed(req, artifact, defaulted=options["kind"] is None)


def stopped(exc: BaseException, run: pushing.PushRun, options: dict[str, Any]) -> ClientError:
    """What a lab-custody push that stopped says; its resume command keeps ``--custody lab``
    and the recipients, without which a resumed push would not record the header it sent."""
    key, profile = options["signing_key"], options["profile"]
    err = transfer.push_stopped(exc, run, key, profile)
    if run.saved is None or not err.hint:
        return err
    tail = ["--signing-key", str(key), *(["--profile", profile] if profile else [])]
    plain = shlex.join(["gateway", "push", "--resume", run.saved.upload, *tail])
    lab = ["--custody", "lab", *(w for r in options["recipients"] for w in ("-r", r))]
    err.hint = err.hint.replace(
        plain, shlex.join(["gateway", "push", "--resume", run.saved.upload, *lab, *tail])
    )
    return err


def _callback(custody: str, encrypted: Path | None, identity: Path | None, **options: Any) -> None:
    if custody == "gateway":
        if encrypted is not None or identity is not None:
            raise click.UsageError("--encrypted and -i are for --custody lab")
        transfer.push.callback(**options)  # type: ignore[misc]
        return
    _lab(options, encrypted, identity)


def _params() -> list[click.Parameter]:
    base = [_recipient_option() if p.name == "recipients" else p for p in transfer.push.params]
    return [*base, *EXTRA]


push = click.Command(
    "push",
    params=_params(),
    callback=_callback,
    help=transfer.push.help,
    short_help=transfer.push.short_help,
)

COMMANDS: list[click.Command] = [push]
