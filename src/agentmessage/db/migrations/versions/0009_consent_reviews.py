"""Possible revocations a person reviews, and their decisions; both append-only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from agentmessage.db.append_only import forbid_changes

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "consent_reviews",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("contact_number", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_consent_reviews"),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_consent_reviews_org_id_phone_numbers",
        ),
    )
    op.create_index(
        "ix_consent_reviews_org_id_created_at", "consent_reviews", ["org_id", "created_at"]
    )
    op.create_table(
        "consent_review_decisions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", JSON_DOCUMENT, nullable=False),
        sa.Column("consent_event_id", sa.Uuid()),
        sa.Column("decided_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "review_id", name="pk_consent_review_decisions"),
        sa.ForeignKeyConstraint(
            ["org_id", "review_id"],
            ["consent_reviews.org_id", "consent_reviews.id"],
            name="fk_consent_review_decisions_org_id_consent_reviews",
        ),
    )
    for table in ("consent_reviews", "consent_review_decisions"):
        forbid_changes(table)


def downgrade() -> None:
    op.drop_table("consent_review_decisions")
    op.drop_table("consent_reviews")
