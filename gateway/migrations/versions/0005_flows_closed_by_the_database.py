"""flows closed by the database: unique requests and grants, deletions, completion claims

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Partial unique indexes (SQLite and PostgreSQL alike) hold what the services check
first: at most one pending access request, and at most one active grant, per evaluator
and artifact, whichever requests, processes or instances race. A database that already
holds duplicates is not changed: the upgrade stops and names them, since ending a grant or
a request is an audited decision for a lab or an admin to make, not for a migration.

``uploads.completing_since`` and ``uploads.completion`` hold a completion's claim (the
``completing`` state): only its claimant assembles, and a retry of the same completion or
the sweeper finishes it. ``pending_deletions`` queues the stored objects of shredded artifacts: the shred commits
first, the store deletes after, and the sweeper retries a deletion until it succeeds.
A signing key is registered once per org (``uq_signing_keys_org_public_key``), so racing
registrations of one key leave one row; an upgrade over duplicates stops and names them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = sa.text("state = 'pending'")
ACTIVE = sa.text("state = 'active'")


def _refuse_duplicates(table: str, who: str, state: str, advice: str) -> None:
    found = (
        op.get_bind()
        .execute(
            sa.text(
                f"SELECT artifact_id, {who}, COUNT(*) FROM {table} WHERE state = :state "  # noqa: S608 - constant names
                f"GROUP BY artifact_id, {who} HAVING COUNT(*) > 1"
            ),
            {"state": state},
        )
        .all()
    )
    if found:
        pairs = ", ".join(f"{artifact} by {principal} ({n})" for artifact, principal, n in found)
        raise RuntimeError(
            f"{table}: more than one {state} row per artifact and {who}: {pairs}; "
            f"{advice}, then upgrade again"
        )


def _refuse_duplicate_keys() -> None:
    found = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT org, public_key, COUNT(*) FROM signing_keys "
                "GROUP BY org, public_key HAVING COUNT(*) > 1"
            )
        )
        .all()
    )
    if found:
        pairs = ", ".join(f"{key} of {org} ({n})" for org, key, n in found)
        raise RuntimeError(
            f"signing_keys: a key registered more than once by one org: {pairs}; "
            "delete all but one row of each (the oldest), then upgrade again"
        )


def upgrade() -> None:
    _refuse_duplicates("access_requests", "principal_id", "pending", "deny all but one")
    _refuse_duplicate_keys()
    _refuse_duplicates("grants", "grantee_id", "active", "expire or revoke all but one")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completing_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("completion", sa.JSON(), nullable=True))
    op.create_table(
        "pending_deletions",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("artifact_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_pending_deletions_artifact_id_artifacts"),
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_pending_deletions")),
    )
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_deletions_artifact_id"), ["artifact_id"], unique=False
        )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index(
            "uq_access_requests_pending",
            ["artifact_id", "principal_id"],
            unique=True,
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index("uq_signing_keys_org_public_key", ["org", "public_key"], unique=True)
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(
            "uq_grants_active",
            ["artifact_id", "grantee_id"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_signing_keys_org_public_key")
    with op.batch_alter_table("pending_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_deletions_artifact_id"))
    op.drop_table("pending_deletions")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("completion")
        batch_op.drop_column("completing_since")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index("uq_grants_active")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_access_requests_pending")
