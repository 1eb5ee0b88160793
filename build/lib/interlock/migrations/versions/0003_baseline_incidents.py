"""The baseline_incidents table: how incidents went before the pilot, imported from an ITSM export.

Revision ID: 0003_baseline_incidents
Revises: 0002_audit_checkpoints
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_baseline_incidents"
down_revision = "0002_audit_checkpoints"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baseline_incidents",
        # The export's incident number, or a digest of the row when it has none: importing the
        # same file twice adds nothing.
        sa.Column("incident_id", sa.String(128), primary_key=True),
        sa.Column("incident_type", sa.String(256)),
        sa.Column("service", sa.String(256)),
        sa.Column("opened", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved", sa.DateTime(timezone=True)),
        sa.Column("first_response", sa.DateTime(timezone=True)),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_baseline_incidents_service", "baseline_incidents", ["service"])


def downgrade() -> None:
    op.drop_table("baseline_incidents")
