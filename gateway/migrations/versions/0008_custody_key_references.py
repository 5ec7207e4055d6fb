"""custody key references: each wrapped identity names its backend's key and its artifact

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

``custody_keys.key_ref`` is the custody backend's reference of the key-encryption key
that wrapped the value (:mod:`gateway.custody`); ``custody_keys.artifact_id`` the artifact
id reserved when the upload was created, which the custody context binds the value to.
Every existing row was wrapped by the old ``keys/master.key``: it is marked with the
``local`` backend's legacy reference (``local:master-key``), under which it keeps
unwrapping, and given its upload's artifact id (or, for an open upload, a fresh one).
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LEGACY_REF = "local:master-key"


def upgrade() -> None:
    with op.batch_alter_table("custody_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "key_ref",
                sa.String(length=255),
                nullable=False,
                server_default=sa.text(f"'{LEGACY_REF}'"),
            )
        )
        batch_op.add_column(sa.Column("artifact_id", sa.String(length=40), nullable=True))
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE custody_keys SET artifact_id = (SELECT uploads.artifact_id FROM uploads "
            "WHERE uploads.id = custody_keys.upload_id)"
        )
    )
    missing = bind.execute(
        sa.text("SELECT upload_id FROM custody_keys WHERE artifact_id IS NULL")
    ).scalars()
    for upload_id in list(missing):
        bind.execute(
            sa.text("UPDATE custody_keys SET artifact_id = :art WHERE upload_id = :up"),
            {"art": f"art_{secrets.token_hex(10)}", "up": upload_id},
        )
    with op.batch_alter_table("custody_keys", schema=None) as batch_op:
        batch_op.alter_column("key_ref", server_default=None)
        batch_op.alter_column("artifact_id", existing_type=sa.String(length=40), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("custody_keys", schema=None) as batch_op:
        batch_op.drop_column("artifact_id")
        batch_op.drop_column("key_ref")
