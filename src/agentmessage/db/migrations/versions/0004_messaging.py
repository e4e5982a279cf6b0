"""Messages outbox, delivery attempts, inbound inbox and double opt-in challenges.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # An inbound SMS finds its organization by the number it was sent to.
    op.create_index("ix_phone_numbers_number", "phone_numbers", ["number"])

    # Every SMS, both directions. Outbound rows are the outbox the dispatcher
    # drains; inbound rows are the inbox, where (provider, provider_message_id)
    # is unique so that a retried webhook inserts nothing and is handled once.
    op.create_table(
        "messages",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("from_number", sa.String(16), nullable=False),
        sa.Column("to_number", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(32)),
        sa.Column("provider", sa.String(16)),
        sa.Column("provider_message_id", sa.String(64)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("locked_until", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_messages"),
        sa.UniqueConstraint(
            "org_id",
            "provider",
            "provider_message_id",
            name="uq_messages_org_id_provider_provider_message_id",
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_messages_org_id_phone_number_id_phone_numbers",
        ),
    )
    op.create_index("ix_messages_status_next_attempt_at", "messages", ["status", "next_attempt_at"])
    op.create_index("ix_messages_provider_message_id", "messages", ["provider_message_id"])

    # One row per delivery attempt of an outbound message.
    op.create_table(
        "message_attempts",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(32)),
        sa.Column("error_message", sa.String(500)),
        sa.Column("provider_message_id", sa.String(64)),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_message_attempts"),
        sa.UniqueConstraint(
            "org_id", "message_id", "attempt", name="uq_message_attempts_org_id_message_id_attempt"
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "message_id"],
            ["messages.org_id", "messages.id"],
            name="fk_message_attempts_org_id_message_id_messages",
        ),
    )

    # Double opt-in challenges. The partial unique index allows one open
    # challenge per contact and sender number: the database, not luck, makes
    # concurrent requests queue exactly one SMS.
    op.create_table(
        "challenges",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("contact_number", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("agreement_text", sa.Text(), nullable=False),
        sa.Column("confirmation_text", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("inbound_message_id", sa.Uuid()),
        sa.Column("consent_event_id", sa.Uuid()),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_challenges"),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_challenges_org_id_phone_number_id_phone_numbers",
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "consent_event_id"],
            ["consent_events.org_id", "consent_events.id"],
            name="fk_challenges_org_id_consent_event_id_consent_events",
        ),
    )
    op.create_index(
        "uq_challenges_open_contact",
        "challenges",
        ["org_id", "phone_number_id", "contact_number"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
        sqlite_where=sa.text("state = 'open'"),
    )


def downgrade() -> None:
    op.drop_table("challenges")
    op.drop_table("message_attempts")
    op.drop_table("messages")
    op.drop_index("ix_phone_numbers_number", table_name="phone_numbers")
