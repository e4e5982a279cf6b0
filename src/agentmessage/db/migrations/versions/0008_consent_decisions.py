"""Send decisions: every consent check and its answers, append-only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from agentmessage.db.append_only import forbid_changes

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "consent_decisions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("at", TS),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("results", JSON_DOCUMENT, nullable=False),
        sa.Column("actor", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_consent_decisions"),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_consent_decisions_org_id_phone_numbers",
        ),
    )
    op.create_index(
        "ix_consent_decisions_org_id_created_at", "consent_decisions", ["org_id", "created_at"]
    )
    forbid_changes("consent_decisions")


def downgrade() -> None:
    op.drop_table("consent_decisions")
