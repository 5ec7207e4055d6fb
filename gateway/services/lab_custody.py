"""Lab-held custody: what the gateway checks of headers it cannot open (age v1, c2sp.org/age).

Under ``custody: "lab"`` the lab encrypts to its own recipients and the gateway holds no
key that opens the artifact. So it checks only what needs no file key:

- at completion, the stored header (:func:`check_stored_header`): it parses as an age v1
  header within ``uploads.max_header_bytes``, every X25519 and mlkem768x25519 stanza has
  the shape the format gives it (one argument of 32 or 1120 bytes, a 32-byte body), and
  the file is long enough for the payload's nonce and one chunk. It cannot check the
  header's MAC (``header-mac``: keyed by the file key) nor that any stanza opens for a key
  the lab holds (``recipient``): :data:`UNCHECKED` names them in the answer and the
  artifact's JSON.
- at approval, the header the lab made for the grantee (:func:`check_grant_header`): it
  parses, nothing follows it, it has exactly one stanza, of the type of the grantee's
  registered recipient (``X25519`` for ``age1...``, ``mlkem768x25519`` for ``age1pq1...``)
  and of that type's shape, within ``uploads.max_header_bytes``. It cannot check that the
  stanza is addressed to that recipient: an X25519 stanza carries a fresh ephemeral share
  and a body sealed under a key derived from the share and the recipient's *secret* key,
  so nothing public links it to the recipient (the same for the hybrid's encapsulation);
  nor that the MAC verifies, nor that the file key is the artifact's. A wrong header harms
  only the grantee's download (its ``age -d`` fails), never another artifact: the payload
  served after it is always this artifact's, and the grant is the lab's to give.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway import age
from gateway.age.format import b64decode
from gateway.errors import BadRequest, Conflict, Unprocessable
from gateway.models import AccessRequest, Custody, Principal
from gateway.runtime import Runtime
from gateway.services.objects import store_errors

UNCHECKED: tuple[str, ...] = ("header-mac", "recipient")
"""What completion of a lab-custody upload could not check without the file key."""

_FIRST_CHUNK_OVERHEAD = 16 + 16  # the payload's nonce, then at least one chunk's tag
_SHAPES = {"X25519": 32, "mlkem768x25519": 1088 + 32}  # the argument's size, decoded
_WRAPPED = 32  # the 16-byte file key sealed with ChaCha20-Poly1305 (or HPKE): 32 bytes


def stanza_type(recipient: str) -> str:
    """The stanza type a header for ``recipient`` (``age1...`` or ``age1pq1...``) carries."""
    parsed = age.parse_recipient(recipient)
    if isinstance(parsed, age.HybridRecipient):
        return "mlkem768x25519"
    if isinstance(parsed, age.X25519Recipient):
        return "X25519"
    raise age.KeyFormatError("not an X25519 or hybrid recipient")


def _check_shape(stanza: age.Stanza, what: str) -> None:
    size = _SHAPES.get(stanza.type)
    if size is None:
        return
    if len(stanza.args) != 1:
        raise Unprocessable(f"{what}: a {stanza.type} stanza takes exactly one argument")
    try:
        arg = b64decode(stanza.args[0])
    except age.AgeError:
        raise Unprocessable(f"{what}: a {stanza.type} stanza's argument is not base64") from None
    if len(arg) != size:
        raise Unprocessable(f"{what}: a {stanza.type} stanza's argument is not {size} bytes")
    if len(stanza.body) != _WRAPPED:
        raise Unprocessable(f"{what}: a {stanza.type} stanza's body is not {_WRAPPED} bytes")


def check_stored_header(prefix: bytes | None, total: int, max_header: int) -> int:
    """The size of the lab-custody upload's age header, if what can be checked of it holds."""
    if not prefix:
        raise Unprocessable("age header: part 1 holds no data")
    try:
        header = age.read_header(io.BytesIO(prefix), max_size=max_header)
    except age.AgeError as exc:
        raise Unprocessable(f"age header: the upload is not an age v1 file: {exc}") from None
    if any(s.type == "scrypt" for s in header.stanzas) and len(header.stanzas) != 1:
        raise Unprocessable("age header: an scrypt stanza must be the header's only stanza")
    for stanza in header.stanzas:
        _check_shape(stanza, "age header")
    if total < len(header.raw) + _FIRST_CHUNK_OVERHEAD:
        raise Unprocessable("age payload: the file ends before its first payload chunk")
    return len(header.raw)


@dataclass(frozen=True)
class GrantHeader:
    """A header a lab made for a grantee, checked as far as the format allows."""

    raw: bytes
    recipient: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def check_grant_header(raw: bytes, recipient: str, max_header: int) -> GrantHeader:
    """``raw``, if it is one age header with one stanza of ``recipient``'s type; else 422."""
    what = "field 'header'"
    if len(raw) > max_header:
        raise Unprocessable(f"{what}: the header is {len(raw)} bytes, more than {max_header}")
    try:
        header = age.read_header(io.BytesIO(raw), max_size=max(max_header, 1))
    except age.AgeError as exc:
        raise Unprocessable(f"{what}: not an age v1 header: {exc}") from None
    if len(header.raw) != len(raw):
        raise Unprocessable(f"{what}: bytes follow the header; send the header alone")
    if len(header.stanzas) != 1:
        raise Unprocessable(
            f"{what}: the header has {len(header.stanzas)} stanzas; a grant's header has "
            "exactly one, for the grantee's registered recipient"
        )
    wanted = stanza_type(recipient)
    stanza = header.stanzas[0]
    if stanza.type != wanted:
        raise Unprocessable(
            f"{what}: its stanza is {stanza.type}, but the grantee's registered recipient "
            f"{recipient} takes a {wanted} stanza"
        )
    _check_shape(stanza, what)
    return GrantHeader(raw, recipient)


APPROVE_WITH_IDENTITY = "approve with `gateway approve REQUEST -i LAB_IDENTITY`"


def lab_header(
    rt: Runtime, req: AccessRequest, header: bytes | None, recipient: str | None
) -> GrantHeader | None:
    """The lab's header for the grantee, checked; None under gateway custody (422/409 if
    the approval does not fit the artifact's custody)."""
    if req.artifact.custody != Custody.LAB:
        if header is not None or recipient is not None:
            raise BadRequest(
                f"artifact {req.artifact_id} is in the gateway's custody: the gateway makes the "
                "grantee's header itself; approve without 'header' and 'recipient'"
            )
        return None
    if header is None or recipient is None:
        raise Conflict(
            f"artifact {req.artifact_id} is under lab custody: only the lab can make the "
            f"grantee's header; {APPROVE_WITH_IDENTITY} (fields 'header' and 'recipient')",
            custody=Custody.LAB,
        )
    with rt.db.session() as session:
        registered = registered_recipient(session, req, recipient)
    return check_grant_header(header, registered, rt.config.uploads.max_header_bytes)


def registered_recipient(session: Session, req: AccessRequest, made_for: str | None = None) -> str:
    """The grantee's registered recipient; 409 if none, or not the one ``made_for`` names.

    The grantee's row is locked until ``session`` ends, so within an approval's transaction a
    recipient being replaced either commits first (and this refuses the header) or waits
    for the approval (and the grant's header is then for the recipient it was made for).
    """
    grantee = session.get(Principal, req.principal_id, with_for_update=True, populate_existing=True)
    recipient = grantee.recipient if grantee is not None else None
    if recipient is None:
        raise Conflict(
            f"the grantee {req.principal_id} has registered no age recipient: "
            "there is nothing to make its header for",
            grantee=req.principal_id,
        )
    if made_for is not None and made_for != recipient:
        raise Conflict(
            f"the header was made for {made_for}, but the grantee's registered recipient is "
            f"now {recipient}; check it with the evaluator, then approve again",
            recipient=recipient,
        )
    return recipient


@dataclass(frozen=True)
class ApprovalMaterial:
    """What a lab needs to approve a request on a lab-custody artifact: the stored header
    (its file key wrapped for the lab's own recipients) and the grantee's recipient."""

    request: AccessRequest
    header: bytes
    grantee_name: str
    recipient: str | None


def approval_material(rt: Runtime, req: AccessRequest) -> ApprovalMaterial:
    """The stored header and the grantee's registered recipient; 409 unless lab custody."""
    artifact = req.artifact
    if artifact.custody != Custody.LAB:
        raise Conflict(
            f"artifact {artifact.id} is in the gateway's custody: the gateway makes the "
            "grantee's header; approve without one"
        )
    with store_errors():
        chunks = rt.store.open_read(artifact.object_key, 0, artifact.header_size)
        try:
            header = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    with rt.db.session() as session:
        grantee = session.get(Principal, req.principal_id)
    return ApprovalMaterial(
        req,
        header,
        grantee.name if grantee is not None else "",
        grantee.recipient if grantee is not None else None,
    )
