"""Record heads: each event names its place in its record's story and its predecessor.

Event format 2 (``agentmessage.event/2``) commits to the record's previous event
(its leaf hash) and to the event's sequence number within the record, so that a
proof packet with an event left out fails. ``consent_records`` keeps the head
of that chain (how many events, the last one's leaf hash) for the next event;
existing records get theirs from the log. Events already written keep their
format: the log is never rewritten.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: a batch rebuild of consent_events on SQLite would drop its
    # append-only triggers.
    op.add_column("consent_events", sa.Column("sequence", sa.BigInteger()))
    op.add_column("consent_events", sa.Column("previous_leaf_hash", sa.LargeBinary()))
    op.add_column(
        "consent_records",
        sa.Column("event_count", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("consent_records", sa.Column("last_leaf_hash", sa.LargeBinary()))
    # A leaf's stored hashes start with its own (32 bytes).
    op.execute(
        """
        UPDATE consent_records SET
          event_count = (
            SELECT COUNT(*) FROM log_leaves AS l
            WHERE l.org_id = consent_records.org_id AND l.consent_id = consent_records.id
          ),
          last_leaf_hash = (
            SELECT substr(l.hashes, 1, 32) FROM log_leaves AS l
            WHERE l.org_id = consent_records.org_id AND l.consent_id = consent_records.id
            ORDER BY l.leaf_index DESC LIMIT 1
          )
        """
    )


def downgrade() -> None:
    op.drop_column("consent_records", "last_leaf_hash")
    op.drop_column("consent_records", "event_count")
    op.drop_column("consent_events", "previous_leaf_hash")
    op.drop_column("consent_events", "sequence")
