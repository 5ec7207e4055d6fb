"""denial counts: repeats of one refusal within an interval, recorded as one entry

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``denial_counts`` holds, per principal and refused thing, the interval its first refusal
opened and how many repeats it has counted since (:mod:`gateway.services.denials`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "denial_counts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("artifact", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("subject_org", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first", sa.DateTime(), nullable=True),
        sa.Column("last", sa.DateTime(), nullable=True),
        sa.Column("last_request_id", sa.String(length=64), nullable=True),
        sa.Column("last_ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_denial_counts")),
        sa.UniqueConstraint(
            "actor", "action", "reason", "artifact", "grant_id", "subject_org", name="uq_denials"
        ),
    )
    with op.batch_alter_table("denial_counts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_denial_counts_window_start"), ["window_start"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("denial_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_denial_counts_window_start"))
    op.drop_table("denial_counts")
