"""Hosted consent form submissions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # One row per minted token (its jti): the agreement text the page shows (the
    # token carries only its SHA-256) and, once submitted, when and which history
    # event it recorded. Submitting flips submitted_at from NULL exactly once.
    op.create_table(
        "hosted_forms",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("contact_number", sa.String(16), nullable=False),
        sa.Column("agreement_text", sa.Text(), nullable=False),
        sa.Column("agreement_sha256", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("submitted_at", TS),
        sa.Column("consent_event_id", sa.Uuid()),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_hosted_forms"),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_hosted_forms_org_id_phone_number_id_phone_numbers",
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "consent_event_id"],
            ["consent_events.org_id", "consent_events.id"],
            name="fk_hosted_forms_org_id_consent_event_id_consent_events",
        ),
    )


def downgrade() -> None:
    op.drop_table("hosted_forms")
