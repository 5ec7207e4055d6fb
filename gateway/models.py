"""Metadata models: organisations, principals, tokens, signing and OMS keys, uploads, artifacts.

Ids are opaque strings with a short type prefix. Times are stored as naive UTC. The
closed sets of values (kinds, roles, states) are string enums: their values
are the strings stored in the database and shown on the wire, so a member compares equal
to the column's value.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base


class OrgKind(StrEnum):
    LAB = "lab"
    AGENCY = "agency"
    OVERSIGHT = "oversight"
    OPERATOR = "operator"


class Role(StrEnum):
    LAB = "lab"
    EVALUATOR = "evaluator"
    AUDITOR = "auditor"
    ADMIN = "admin"


# Which role a principal of each kind of organisation may hold.
ROLE_FOR_KIND = {
    OrgKind.LAB: Role.LAB,
    OrgKind.AGENCY: Role.EVALUATOR,
    OrgKind.OVERSIGHT: Role.AUDITOR,
    OrgKind.OPERATOR: Role.ADMIN,
}


class ArtifactKind(StrEnum):
    WEIGHTS = "weights"
    CREDENTIAL = "credential"


class CustodyType(StrEnum):
    """The upload's custody key: X25519 (every age release reads it) or the post-quantum hybrid."""

    X25519 = "x25519"
    MLKEM768X25519 = "mlkem768x25519"


class Custody(StrEnum):
    """Who holds the key that opens an artifact: the gateway's custody backend, or the lab alone."""

    GATEWAY = "gateway"
    LAB = "lab"


class UploadState(StrEnum):
    OPEN = "open"
    # Claimed by one completion (gateway.services.completion): only it assembles.
    COMPLETING = "completing"
    COMPLETED = "completed"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"


class ArtifactState(StrEnum):
    AVAILABLE = "available"
    # Access has ended and the key's destruction is under way (or is to be retried):
    # nothing is released, served or granted; the shred or the sweeper ends it.
    SHREDDING = "shredding"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"


class GrantState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Org(Base):
    __tablename__ = "orgs"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Principal(Base):
    __tablename__ = "principals"
    __table_args__ = (UniqueConstraint("org", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    # SHA-256 of the whole token, hex: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    principal: Mapped[Principal] = relationship(lazy="joined")


class SigningKey(Base):
    __tablename__ = "signing_keys"
    # One row per key and org, whichever registrations race (services.identity re-reads).
    __table_args__ = (Index("uq_signing_keys_org_public_key", "org", "public_key", unique=True),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    public_key: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class OmsKey(Base):
    """An EC public key or a CA chain (PEM) an org's OpenSSF model signatures verify under."""

    __tablename__ = "oms_keys"
    __table_args__ = (UniqueConstraint("org", "fingerprint"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    public_key: Mapped[str] = mapped_column(Text)  # SubjectPublicKeyInfo, PEM, as re-encoded
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the DER, hex
    # the SAN or CN a chain's signing certificate must carry; None: any the CA issued
    identity: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Upload(Base):
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    share_with: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    expected_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    part_size: Mapped[int] = mapped_column(BigInteger)
    max_parts: Mapped[int] = mapped_column(Integer)
    # The gateway's custody recipient; "" under lab custody (the gateway holds no key).
    recipient: Mapped[str] = mapped_column(Text)
    custody: Mapped[str] = mapped_column(  # a Custody
        String(16), server_default=text("'gateway'")
    )
    state: Mapped[str] = mapped_column(String(16), index=True)  # an UploadState
    object_key: Mapped[str] = mapped_column(String(255))
    store_handle: Mapped[str] = mapped_column(Text)
    # The first bytes of part 1 (at most uploads.max_header_bytes): the age header.
    header_prefix: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    artifact_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # While completing: when the claim was made, and what it completes with
    # ({"manifest", "signature", "by": the claiming principal}), so a retry of the same
    # completion or the sweeper can finish it.
    completing_since: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    completion: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class UploadPart(Base):
    __tablename__ = "upload_parts"
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class CustodyKey(Base):
    """An upload's custody identity, wrapped by the ``[custody]`` backend (:mod:`gateway.custody`).

    ``key_ref`` names the backend's key-encryption key (``local:master-key`` for values of
    the old master key); ``artifact_id`` is the id reserved for the upload's artifact when
    the upload was created: the custody context (upload, artifact, org) binds the value.
    """

    __tablename__ = "custody_keys"
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(String(40))
    key_ref: Mapped[str] = mapped_column(String(255))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Artifact(Base):
    __tablename__ = "artifacts"
    # The order artifacts are listed and paged in (gateway.paging): a page reads its own rows.
    __table_args__ = (Index("ix_artifacts_listing", "submitted_at", "id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), unique=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    share_with: Mapped[list[str]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(BigInteger)
    header_size: Mapped[int] = mapped_column(Integer)
    object_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), index=True)  # an ArtifactState
    submitted_at: Mapped[datetime] = mapped_column(DateTime)
    review_ends_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(String(128))
    signing_key: Mapped[str] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    custody: Mapped[str] = mapped_column(  # a Custody, the upload's
        String(16), server_default=text("'gateway'")
    )


class PendingDeletion(Base):
    """A stored object of a shredded artifact, still to be deleted from the store.

    Queued in the shredding transaction, deleted after it commits; a deletion that fails
    stays queued and the sweeper retries it every sweep. ``reason`` is the artifact's end
    (``withdrawn`` or ``expired``).
    """

    __tablename__ = "pending_deletions"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class ArtifactShare(Base):
    """One agency an artifact is shared with: ``share_with`` as rows, so listings filter in SQL."""

    __tablename__ = "artifact_shares"
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), primary_key=True, index=True)


def _only(state: str) -> dict[str, Any]:
    """A partial index's condition, on both databases the gateway runs on."""
    where = text(f"state = '{state}'")
    return {"sqlite_where": where, "postgresql_where": where}


class AccessRequest(Base):
    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ix_access_requests_listing", "created_at", "id"),
        # At most one pending request per evaluator and artifact, whoever races.
        Index(
            "uq_access_requests_pending",
            "artifact_id",
            "principal_id",
            unique=True,
            **_only(RequestState.PENDING),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), index=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"), index=True)  # the evaluator's agency
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    justification: Mapped[str] = mapped_column(Text)
    duration_hours: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(16), index=True)  # a RequestState
    created_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(40), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    grant_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # Loaded with the request: whose artifact it is decides who may see and decide it.
    artifact: Mapped[Artifact] = relationship(lazy="joined", viewonly=True)


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (
        Index("ix_grants_listing", "not_before", "id"),
        # At most one active grant per evaluator and artifact: one header, one recipient.
        Index(
            "uq_grants_active", "artifact_id", "grantee_id", unique=True, **_only(GrantState.ACTIVE)
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), index=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id"), unique=True)
    grantee_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), index=True)
    org: Mapped[str] = mapped_column(ForeignKey("orgs.name"))  # the grantee's agency
    not_before: Mapped[datetime] = mapped_column(DateTime)
    not_after: Mapped[datetime] = mapped_column(DateTime, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # a GrantState
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    ended_by: Mapped[str | None] = mapped_column(String(40), default=None)
    # The age header re-written for the grantee's recipient, made once: by the gateway at
    # key release, or (lab custody) by the lab, sent with its approval.
    recipient: Mapped[str | None] = mapped_column(Text, default=None)
    header: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    released_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # Loaded with the grant: whose artifact it is decides who may see and revoke it.
    artifact: Mapped[Artifact] = relationship(lazy="joined", viewonly=True)

    def state_at(self, now: datetime) -> GrantState:
        """The state at ``now``, counting an active grant past its ``not_after`` as expired."""
        if self.state == GrantState.ACTIVE and self.not_after <= now:
            return GrantState.EXPIRED
        return GrantState(self.state)
