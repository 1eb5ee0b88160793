"""The audit_events table: the hash-chained, append-only audit trail.

Revision ID: 0001_audit_events
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_audit_events"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        # Assigned by the writer (last seq + 1, under the append lock), not by a sequence: a
        # sequence skips numbers on rollback, and a gap must only ever mean a deleted row.
        # On SQLite, INTEGER PRIMARY KEY makes seq the rowid, so scans in seq order are cheap.
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("proposal_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(256)),
        sa.Column("status", sa.String(64)),
        sa.Column("recommender", sa.String(256)),
        sa.Column("model_version", sa.String(256)),
        sa.Column("action", sa.String(256)),
        sa.Column("service", sa.String(256)),
        sa.Column("risk_tier", sa.String(32)),
        sa.Column("trace_id", sa.String(128)),
        # JSON, not JSONB, on PostgreSQL: json keeps the exact text written, which is the
        # canonical text that was hashed, so verify can hash it without re-serialising.
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    # A proposal's timeline, in chain order.
    op.create_index("ix_audit_events_proposal_seq", "audit_events", ["proposal_id", "seq"])
    # Events of a kind in a time window (metrics' windows, exceptions), and all events by time.
    op.create_index("ix_audit_events_kind_at", "audit_events", ["kind", "at"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    # Metrics reads these partial covering indexes, never the table (index-only scans on
    # PostgreSQL): every proposal's submission, end and escalation, and its human decisions.
    # The predicates must stay exactly as interlock/audit/metrics.py writes its filters.
    op.create_index(
        "ix_audit_events_lifecycle",
        "audit_events",
        ["proposal_id", "kind", "at", "status", "recommender", "model_version", "action"],
        postgresql_where=sa.text(LIFECYCLE),
        sqlite_where=sa.text(LIFECYCLE),
    )
    if op.get_bind().dialect.name == "postgresql":
        # SQLite's planner does not match json_extract() predicates: there these would only
        # slow every insert down.
        op.create_index(
            "ix_audit_events_human_decisions",
            "audit_events",
            ["proposal_id", "at"],
            postgresql_where=sa.text(HUMAN_DECISION),
        )
        op.create_index(
            "ix_audit_events_human_rejections",
            "audit_events",
            ["proposal_id"],
            postgresql_where=sa.text(HUMAN_REJECTION),
        )


LIFECYCLE = "kind IN ('submitted', 'final', 'escalated')"
HUMAN_DECISION = "kind = 'decision' AND CAST((data ->> 'human') AS BOOLEAN)"
HUMAN_REJECTION = HUMAN_DECISION + " AND (data ->> 'decision') = 'reject'"


def downgrade() -> None:
    op.drop_table("audit_events")
