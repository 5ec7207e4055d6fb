"""audit checkpoints: the last checkpoint signed, and the last published with its witnesses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``audit_checkpoints`` holds two rows (:mod:`gateway.services.cosigning`): ``signed``, the
last checkpoint the gateway signed, which every new one must extend (compare-and-set on its
size and root); ``cosigned``, the last one published with its witnesses' quorum, which the
gateway serves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_audit_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
