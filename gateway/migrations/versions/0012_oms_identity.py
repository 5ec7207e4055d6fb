"""oms identity: a chain's signer identity; chains stored in canonical form

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

``oms_keys.identity`` holds the name (SAN or CN) a registered chain's signing certificate
must carry, NULL for none. Chains registered before are rewritten in canonical form (each
certificate once, ordered by its SHA-256) with their fingerprint recomputed
(:func:`gateway.tree.oms.chain_certificates`), so clients that compute the canonical
fingerprint from the PEM accept them. Two rows of one organisation that hold the same
certificates become one: the oldest is kept, revoked at the earliest time any of them was
(revoked stays revoked), and the others are deleted; their log entries remain.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.tree import oms

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_keys = sa.table(
    "oms_keys",
    sa.column("id", sa.String),
    sa.column("org", sa.String),
    sa.column("public_key", sa.Text),
    sa.column("fingerprint", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("revoked_at", sa.DateTime),
)


def upgrade() -> None:
    with op.batch_alter_table("oms_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity", sa.String(length=255), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_keys)
        .where(_keys.c.public_key.like("%-----BEGIN CERTIFICATE-----%"))
        .order_by(_keys.c.created_at, _keys.c.id)
    ).all()
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        certs = oms.chain_certificates(row.public_key.encode())
        groups.setdefault((row.org, oms.chain_fingerprint(certs)), []).append(row)
    for (_, fingerprint), same in groups.items():
        first, *others = same  # oldest first
        revoked = [r.revoked_at for r in same if r.revoked_at is not None]
        for row in others:  # before the update, which may take one of their fingerprints
            bind.execute(sa.delete(_keys).where(_keys.c.id == row.id))
        certs = oms.chain_certificates(first.public_key.encode())
        bind.execute(
            sa.update(_keys)
            .where(_keys.c.id == first.id)
            .values(
                public_key=oms.chain_pem(certs),
                fingerprint=fingerprint,
                revoked_at=min(revoked) if revoked else None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("oms_keys", schema=None) as batch_op:
        batch_op.drop_column("identity")
