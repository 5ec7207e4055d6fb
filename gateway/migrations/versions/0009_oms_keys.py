"""oms keys: the EC public keys a lab's OpenSSF model signatures verify under

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

``oms_keys`` holds, per organisation, the public keys (PEM) its principals registered
for OpenSSF Model Signing (``model.sig``), each with its SHA-256 fingerprint
(:mod:`gateway.services.omskeys`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oms_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=40), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name=op.f("fk_oms_keys_org_orgs")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_oms_keys_principal_id_principals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oms_keys")),
        sa.UniqueConstraint("org", "fingerprint", name=op.f("uq_oms_keys_org")),
    )
    with op.batch_alter_table("oms_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oms_keys_org"), ["org"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oms_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oms_keys_org"))
    op.drop_table("oms_keys")
