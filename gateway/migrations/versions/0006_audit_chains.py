"""audit chains and identity on record: the orgs each entry concerns, each org's head, one holder per signing key

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``audit_entry_orgs`` holds the orgs each entry concerns and scopes what a lab (or an agency)
reads; ``audit_org_heads`` holds each org's latest entry, which the next v2 entry's ``prev``
names (:mod:`gateway.audit.chains`). Entries already stored are v1: their leaves name no
subject org and carry no chain, so each keeps the one concerning row the old scope gave it
(its ``subject_org`` column) and the heads start empty: every org's chain begins at its first
v2 entry.

A signing key's public key is held by one registration only (a unique index, revoked keys
included, so a revoked key is never registered again). A database where two organisations
registered one key stops the upgrade, naming the key: the operator decides which
registration stands.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entry_orgs",
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("org", "idx", name=op.f("pk_audit_entry_orgs")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "audit_org_heads",
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org", name=op.f("pk_audit_org_heads")),
    )
    op.execute(
        "INSERT INTO audit_entry_orgs (org, idx) "
        "SELECT subject_org, idx FROM audit_entries WHERE subject_org IS NOT NULL"
    )
    _refuse_shared_signing_keys()
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_public_key"))
        batch_op.create_index(batch_op.f("ix_signing_keys_public_key"), ["public_key"], unique=True)


def _refuse_shared_signing_keys() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT public_key, COUNT(*) FROM signing_keys "
                "GROUP BY public_key HAVING COUNT(*) > 1 ORDER BY public_key"
            )
        )
        .all()
    )
    if shared:
        keys = ", ".join(f"{key} ({count} registrations)" for key, count in shared[:5])
        raise RuntimeError(
            "signing keys registered more than once (each must have one holder): "
            f"{keys}; delete the registrations that must not stand, then upgrade again"
        )


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_public_key"))
        batch_op.create_index(
            batch_op.f("ix_signing_keys_public_key"), ["public_key"], unique=False
        )
    op.drop_table("audit_org_heads")
    op.drop_table("audit_entry_orgs")
