"""lab custody: who holds the key that opens an upload and its artifact

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``uploads.custody`` and ``artifacts.custody`` are ``gateway`` (the gateway holds the
upload's custody identity, wrapped by the ``[custody]`` backend) or ``lab`` (the lab
encrypted to its own recipients and the gateway holds nothing that opens it; every grant's
header is made by the lab when it approves). Every existing row is ``gateway``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite takes a NOT NULL column with a constant default): a batch
    # copy of ``uploads`` would drop a table that ``artifacts`` refers to.
    for table in ("uploads", "artifacts"):
        op.add_column(
            table,
            sa.Column(
                "custody", sa.String(length=16), nullable=False, server_default=sa.text("'gateway'")
            ),
        )


def downgrade() -> None:
    for table in ("artifacts", "uploads"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("custody")
