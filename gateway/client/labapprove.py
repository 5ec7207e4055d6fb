"""``gateway approve REQUEST -i LAB_IDENTITY``: a lab-custody approval made on the lab's machine.

It fetches the artifact's stored header and the evaluator's registered recipient
(``GET /v1/access-requests/{id}/custody``), shows the recipient and pins it per evaluator
(:func:`gateway.client.trust.pin_recipient`: a changed one needs
``--trust-new-recipient``), opens the stored header with the lab's identity (its MAC
checked), writes a header for that recipient alone (``gateway.age.reheader``: a fresh
stanza and MAC; the payload is untouched) and sends it with the approval, naming the
recipient it was made for. The file key never leaves this machine unwrapped.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from gateway import age
from gateway.client import agehdr, trust
from gateway.client.errors import ClientError
from gateway.client.http import Api
from gateway.tui import say


def lab_header(material: dict[str, Any], identities: agehdr.Identities) -> bytes:
    """The grantee's header: the stored one re-written, by the lab's identity, for the
    grantee's registered recipient alone."""
    recipient = material.get("recipient")
    if not isinstance(recipient, str):
        raise ClientError(
            f"the evaluator {material.get('grantee_name') or material.get('grantee')} has "
            "registered no age recipient: there is nothing to wrap the file key for",
            hint="the evaluator registers one first (`gateway keygen --register`)",
        )
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


def approve_lab(
    api: Api,
    request_id: str,
    identity: Path,
    body: dict[str, Any],
    *,
    trust_new: bool = False,
    known: Path | None = None,
    header_sha256: str | None = None,
) -> dict[str, Any]:
    """Approve ``request_id`` with the header made here; the grant.

    The served header must be the one this machine pushed for the request's artifact
    (or hash to ``header_sha256``): see :func:`gateway.client.trust.check_lab_header`.
    """
    material = api.get(f"/v1/access-requests/{request_id}/custody")
    identities = agehdr.load_identities(identity)
    stored = base64.b64decode(str(material.get("header", "")))
    trust.check_lab_header(api.url, str(material.get("artifact")), stored, expected=header_sha256)
    recipient = material.get("recipient")
    who = f"{material.get('grantee_name') or '?'} of {material.get('org')}"
    if isinstance(recipient, str):
        say(f"the evaluator {who} ({material.get('grantee')}) has registered {recipient}")
        first = trust.pin_recipient(
            api.url,
            str(material.get("grantee")),
            recipient,
            trust_new=trust_new,
            label=who,
            path=known,
        )
        if first:
            say(f"pinned {recipient} for {who} on this machine")
    header = lab_header(material, identities)
    made = {**body, "header": base64.b64encode(header).decode(), "recipient": recipient}
    grant: dict[str, Any] = api.post(f"/v1/access-requests/{request_id}/approve", made)
    return grant
