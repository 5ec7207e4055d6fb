"""artifact shares and listing indexes: lists filter and page in SQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

``artifact_shares`` holds each artifact's ``share_with`` as rows; it is filled from every
artifact already stored, so an evaluator's list is the same before and after the upgrade.
One index per list on the order it pages in, so a page reads only its own rows.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LISTINGS = {
    "artifacts": ["submitted_at", "id"],
    "access_requests": ["created_at", "id"],
    "grants": ["not_before", "id"],
}


def upgrade() -> None:
    shares = op.create_table(
        "artifact_shares",
        sa.Column("artifact_id", sa.String(length=40), nullable=False),
        sa.Column("org", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_artifact_shares_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(["org"], ["orgs.name"], name=op.f("fk_artifact_shares_org_orgs")),
        sa.PrimaryKeyConstraint("artifact_id", "org", name=op.f("pk_artifact_shares")),
    )
    with op.batch_alter_table("artifact_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifact_shares_org"), ["org"], unique=False)

    for table, columns in LISTINGS.items():
        op.create_index(f"ix_{table}_listing", table, columns, unique=False)

    rows = op.get_bind().execute(sa.text("SELECT id, share_with FROM artifacts")).all()
    values = []
    for artifact_id, share_with in rows:
        # SQLite hands JSON back as text, PostgreSQL's driver as the decoded list.
        orgs = json.loads(share_with) if isinstance(share_with, str | bytes) else share_with
        values += [{"artifact_id": artifact_id, "org": org} for org in sorted(set(orgs or []))]
    if values:
        op.bulk_insert(shares, values)


def downgrade() -> None:
    for table in LISTINGS:
        op.drop_index(f"ix_{table}_listing", table_name=table)
    with op.batch_alter_table("artifact_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifact_shares_org"))
    op.drop_table("artifact_shares")
