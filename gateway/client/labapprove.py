"""``gateway approve REQUEST -i LAB_IDENTITY``: a lab-custody approval made on the lab's machine.

It fetches the artifact's stored header and the evaluator's registered recipient
(``GET /v1/access-requests/{id}/custody``), shows the recipient, holds it to this machine's
pins by the evaluator's id and by its (organisation, name) (:func:`gateway.client.trust.
check_recipient`: a changed one needs ``--trust-new-recipient``, and one never pinned here
the lab's confirmation) and to the audit log (the latest ``identity.recipient.set`` entry
of that evaluator, proven in the checkpoint), opens
the stored header with the lab's identity (its MAC checked), writes a header for that
recipient alone (``gateway.age.reheader``: a fresh stanza and MAC; the payload is untouched)
and sends it with the approval, naming the recipient it was made for; once the approval
succeeded, the recipient is pinned. The file key never leaves this machine unwrapped.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import click

from gateway import age
from gateway.client import agehdr, identitylog, trust
from gateway.client.errors import ClientError
from gateway.client.http import Api
from gateway.tui import say


def registered(material: dict[str, Any]) -> str:
    """The grantee's registered recipient, as the custody material gives it; refused if none."""
    recipient = material.get("recipient")
    if not isinstance(recipient, str):
        raise ClientError(
            f"the evaluator {material.get('grantee_name') or material.get('grantee')} has "
            "registered no age recipient: there is nothing to wrap the file key for",
            hint="the evaluator registers one first (`gateway keygen --register`)",
        )
    return recipient


def lab_header(material: dict[str, Any], identities: agehdr.Identities) -> bytes:
    """The grantee's header: the stored one re-written, by the lab's identity, for the
    grantee's registered recipient alone."""
    recipient = registered(material)
    stored = base64.b64decode(str(material.get("header", "")))
    try:
        header = age.read_header(io.BytesIO(stored), max_size=max(len(stored), 1))
        return bytes(age.reheader(header, list(identities), [agehdr.check_recipient(recipient)]))
    except age.NoIdentityMatchError:
        raise ClientError(
            "the lab identity given does not open this artifact's header",
            hint="give the identity the artifact was encrypted to (-i LAB_IDENTITY)",
        ) from None
    except age.AgeError as exc:
        raise ClientError(f"the artifact's header does not open: {exc}") from None


def check_on_record(api: Api, who: trust.Evaluator) -> None:
    """Refuse a recipient the audit log does not show as the latest ``who`` registered.

    The entries are proven in the checkpoint under ``GATEWAY_AUDIT_KEY`` when it is set,
    else under the key the gateway serves (which proves only that they are in the
    gateway's own log): :func:`gateway.client.identitylog.registered_by`. A recipient
    written into the database with no entry, or one registered by another principal, is
    not wrapped for.
    """
    last, cp, pinned = identitylog.registered_by(api, who.principal, who.org, who.name)
    recorded = last.new if last is not None else None
    if recorded != who.recipient:
        raise ClientError(
            f"the gateway offers {who.recipient} for {who.label()}, but the audit log records "
            f"{recorded or 'no recipient'} as the latest they registered (log size {cp.size}): "
            "the file key is not wrapped for it"
        )
    assert last is not None
    key = "GATEWAY_AUDIT_KEY" if pinned else "the key the gateway serves"
    say(f"on record: entry {last.index} of {last.time} (log size {cp.size}, under {key})")


def approve_lab(
    api: Api,
    request_id: str,
    identity: Path,
    body: dict[str, Any],
    *,
    trust_new: bool = False,
    known: Path | None = None,
    header_sha256: str | None = None,
    expect_recipient: str | None = None,
) -> dict[str, Any]:
    """Approve ``request_id`` with the header made here; the grant.

    The served header must be the one this machine pushed for the request's artifact
    (or hash to ``header_sha256``): see :func:`gateway.client.trust.check_lab_header`.
    The recipient must agree with this machine's pins (:func:`gateway.client.trust.
    check_recipient`) and be the latest the log records the evaluator registering
    (:func:`check_on_record`), and ``expect_recipient`` when given; the first approval of
    an evaluator here needs the lab's confirmation (:func:`confirm_first_use`). It is
    pinned only once the approval succeeded.
    """
    material = api.get(f"/v1/access-requests/{request_id}/custody")
    identities = agehdr.load_identities(identity)
    stored = base64.b64decode(str(material.get("header", "")))
    trust.check_lab_header(api.url, str(material.get("artifact")), stored, expected=header_sha256)
    registered(material)
    who = trust.evaluator(api.url, material)
    say(f"the evaluator {who.label()} has registered {who.recipient}")
    if expect_recipient is not None and expect_recipient != who.recipient:
        raise ClientError(
            f"the gateway offers {who.recipient} for {who.label()}, not {expect_recipient} "
            "as expected: the file key is not wrapped for it"
        )
    first = trust.check_recipient(who, trust_new=trust_new, path=known)
    check_on_record(api, who)
    if first:
        confirm_first_use(api.url, who, trust_new=trust_new, expected=expect_recipient)
    header = lab_header(material, identities)
    made = {**body, "header": base64.b64encode(header).decode(), "recipient": who.recipient}
    grant: dict[str, Any] = api.post(f"/v1/access-requests/{request_id}/approve", made)
    trust.pin_recipient(who, path=known)
    if first:
        say(f"note: pinned {who.recipient} for {who.label()} at {api.url} on this machine")
    return grant


def confirm_first_use(
    gateway: str, who: trust.Evaluator, *, trust_new: bool, expected: str | None
) -> None:
    """Go on with the first approval of ``who`` on this machine only if the lab confirms it.

    Nothing pins ``who`` here yet, so nothing but the gateway vouches for the recipient:
    the lab confirms it by giving the recipient it had from the evaluator out of band
    (``expected``, already held to the one offered), by ``trust_new``, or by answering a
    prompt on a terminal that shows the organisation, the name and the recipient. Without
    any of these, :class:`ClientError`: the file key is not wrapped.
    """
    said = f"first use of {who.label()} at {gateway}: no recipient is pinned for them here"
    if expected is not None or trust_new:
        how = "--expect-recipient" if expected is not None else "--trust-new-recipient"
        say(f"note: {said}; {who.recipient} confirmed by {how}")
        return
    if sys.stdin.isatty():
        say(f"{said}.\n  organisation: {who.org}\n  evaluator:    {who.name} ({who.principal})")
        say(f"  recipient:    {who.recipient}")
        if click.confirm(
            "is this the evaluator's recipient, as they told you? wrap the file key for it",
            err=True,
            default=False,
        ):
            return
        raise ClientError(f"not confirmed: the file key is not wrapped for {who.recipient}")
    raise ClientError(
        f"{said}, and there is no terminal to confirm {who.recipient} at: the file key is not "
        "wrapped for it",
        hint="check the recipient with the evaluator out of band, then pass "
        "--expect-recipient AGE1... (theirs) or --trust-new-recipient",
    )
