"""The audit_checkpoints table: the store's copy of each signed checkpoint of the chain.

Revision ID: 0002_audit_checkpoints
Revises: 0001_audit_events
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_audit_checkpoints"
down_revision = "0001_audit_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", count, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("events", count, nullable=False),
        # The canonical UTC text the signature covers, not a timestamp type that could reformat it.
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        # Two checkpoints may name one row with different hashes (the chain was rewritten between
        # them): both are kept, that is the evidence.
        sa.PrimaryKeyConstraint("seq", "hash", "key_id", name="pk_audit_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
