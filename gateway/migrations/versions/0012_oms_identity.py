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

Before, a chain that added any certificate to a revoked one was new material; now a chain
holding a certificate revoked is refused, and one in force keeps every certificate it
holds from being revoked. So a chain in force, registered at or after another chain was
revoked, that holds every certificate of that revoked chain would void its revocation: it
is revoked here, as of its own registration (it should never have been in force); its
fingerprint and log entries remain.
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
    merged: list[tuple[Any, frozenset[str], Any]] = []  # (row, certificates, revoked_at)
    for row in rows:
        certs = oms.chain_certificates(row.public_key.encode())
        groups.setdefault((row.org, oms.chain_fingerprint(certs)), []).append(row)
    for (_, fingerprint), same in groups.items():
        first, *others = same  # oldest first
        revoked = [r.revoked_at for r in same if r.revoked_at is not None]
        for row in others:  # before the update, which may take one of their fingerprints
            bind.execute(sa.delete(_keys).where(_keys.c.id == row.id))
        certs = oms.chain_certificates(first.public_key.encode())
        held = frozenset(oms.certificate_fingerprint(c) for c in certs)
        merged.append((first, held, min(revoked) if revoked else None))
        bind.execute(
            sa.update(_keys)
            .where(_keys.c.id == first.id)
            .values(
                public_key=oms.chain_pem(certs),
                fingerprint=fingerprint,
                revoked_at=min(revoked) if revoked else None,
            )
        )

    for row in _voiding(merged):
        bind.execute(sa.update(_keys).where(_keys.c.id == row.id).values(revoked_at=row.created_at))


def _voiding(chains: list[tuple[Any, frozenset[str], Any]]) -> list[Any]:
    """The chains in force that hold every certificate of a chain of their organisation
    revoked at or before their registration."""
    return [
        row
        for row, certs, revoked_at in chains
        if revoked_at is None
        and any(
            other.org == row.org and when <= row.created_at and theirs <= certs
            for other, theirs, when in chains
            if when is not None
        )
    ]


def downgrade() -> None:
    with op.batch_alter_table("oms_keys", schema=None) as batch_op:
        batch_op.drop_column("identity")
