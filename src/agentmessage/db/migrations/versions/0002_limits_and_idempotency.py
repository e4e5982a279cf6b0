"""Rate-limit windows and Idempotency-Key records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per organization and minute: the units spent in that window.
    # Shared by every server process, so the allowance holds across all of them.
    op.create_table(
        "rate_limit_windows",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "window_start", name="pk_rate_limit_windows"),
    )
    # One row per (organization, endpoint, key): the request it answered and,
    # once done, the response to replay. Kept 24 hours.
    op.create_table(
        "idempotency_keys",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        # SHA-256 of the key's bytes: any header bytes fit, none is stored raw.
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer()),
        sa.Column("response_body", sa.LargeBinary()),
        sa.Column("created_at", TS, nullable=False),
        # An in-progress claim older than this is abandoned (its process died).
        sa.Column("locked_until", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "endpoint", "key_hash", name="pk_idempotency_keys"),
    )
    op.create_index(
        "ix_idempotency_keys_org_id_expires_at", "idempotency_keys", ["org_id", "expires_at"]
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("rate_limit_windows")
