"""``gateway keygen``: make a key pair, or register the public half of one already made.

An evaluator's registered age recipient is where the gateway releases keys; once a
grant's key is released to a recipient it is never released again, to any other. So
replacing the registered recipient (a new ``keygen``) names the active grants whose key
went to the old one and asks first, and ``--register-existing FILE`` registers the
recipient of an identity file made earlier: the way back to those grants. A lab's
``--register-existing`` registers an existing signing key (which ``push`` then checks
before sending anything).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.client import keys
from gateway.client.base import api_for, confirm, profile_option, yes_option
from gateway.client.errors import ClientError, InvocationError
from gateway.client.http import Api
from gateway.client.humane import article
from gateway.tui import out, reported, say

ROLE_KEYS = {"evaluator": "age", "lab": "signing"}


def _stranded(api: Api, new: str) -> list[dict[str, Any]]:
    """Active grants whose key was released to a recipient other than ``new``."""
    return [
        g
        for g in api.items("/v1/grants")
        if g.get("state") == "active" and g.get("recipient") and g.get("recipient") != new
    ]


def check_replacement(api: Api, new: str, *, yes: bool) -> bool:
    """Whether registering recipient ``new`` may replace the one registered now."""
    current = api.get("/v1/me").get("recipient")
    if not current or current == new:
        return True
    stranded = _stranded(api, new)
    if not stranded:
        say(f"replacing your registered recipient {current} (no active grant released a key to it)")
        return True
    ids = ", ".join(str(g["id"]) for g in stranded)
    question = (
        f"replace your registered recipient {current}? the key of grant(s) {ids} went to a "
        "recipient you would no longer have registered, and pulls under them will fail until "
        "you register it again with `gateway keygen --register-existing FILE`"
    )
    return confirm(question, yes=yes, refusal="the registered recipient was not replaced")


def register(api: Api, kind: str, public: str, *, yes: bool) -> bool:
    """Register ``public`` (an age recipient or a signing key); False if the person declined."""
    if kind == "age":
        if not check_replacement(api, public, yes=yes):
            return False
        api.put("/v1/me/recipient", {"recipient": public})
    else:
        api.put("/v1/me/signing-key", {"public_key": public})
    return True


def _kind_for(api: Api | None, key_type: str) -> str:
    if key_type != "auto":
        return key_type
    if api is None:
        raise InvocationError("--type is needed with --no-register")
    role = str(api.get("/v1/me").get("role"))
    if role not in ROLE_KEYS:
        raise InvocationError(
            f"{article(role)} registers no key", hint="pass --type to make one anyway"
        )
    return ROLE_KEYS[role]


@click.command("keygen")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write the new private key (created 0600; never overwritten)",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["auto", "age", "signing"]),
    default="auto",
    show_default=True,
    help="age identity (evaluators) or Ed25519 signing key (labs); auto: by your role",
)
@click.option(
    "--no-register", is_flag=True, help="only write the key; do not register its public half"
)
@click.option(
    "--register-existing",
    "existing",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="make no key: register the public half of this key file, made earlier",
)
@yes_option("replace your registered recipient")
@profile_option
@reported(ClientError)
def keygen(
    profile: str | None,
    output: Path | None,
    key_type: str,
    no_register: bool,
    existing: Path | None,
    yes: bool,
) -> None:
    """Make a key pair, keep the private half in a 0600 file, register the public half.

    With --register-existing FILE, register the public half of a key file made before
    (an age identity, e.g. after a newer keygen replaced it; or a lab's signing key).
    """
    if existing is not None:
        if output is not None or no_register:
            raise InvocationError(
                "--register-existing makes no key: leave out -o and --no-register"
            )
        _register_existing(api_for(profile), existing, yes=yes)
        return
    if output is None:
        raise InvocationError("give the file to write the new key to with -o FILE")
    api = None if no_register else api_for(profile)
    kind = _kind_for(api, key_type)
    if output.exists() or output.is_symlink():
        raise keys.PrivateKeyFileError(f"{output} exists; not overwriting a key")
    if kind == "age":
        data, public = keys.new_age_identity()
        if api is not None and not check_replacement(api, public, yes=yes):
            say("no key made")
            return
        keys.create_private(output, data)
    else:
        public = keys.write_signing_key(output)
    if api is not None:
        register(api, kind, public, yes=True)  # a replacement was asked about above
    out(public)
    say(f"private key written to {output}" + ("" if api is None else "; public key registered"))


def _register_existing(api: Api, path: Path, *, yes: bool) -> None:
    kind, public = keys.public_of(path)
    role = str(api.get("/v1/me").get("role"))
    if ROLE_KEYS.get(role) != kind:
        what = "an age identity" if kind == "age" else "a signing key"
        raise InvocationError(f"{path} holds {what}, which {article(role)} does not register")
    if not register(api, kind, public, yes=yes):
        say("nothing registered")
        return
    out(public)
    say(f"registered the public half of {path} ({keys.fingerprint(public)})")


COMMANDS: list[click.Command] = [keygen]
