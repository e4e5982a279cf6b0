"""Organizations, sender numbers, API keys, consent records and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from agentmessage.db.append_only import forbid_changes

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer()),
        sa.Column("help_text", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
    )
    op.create_table(
        "phone_numbers",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_phone_numbers"),
        sa.UniqueConstraint("org_id", "number", name="uq_phone_numbers_org_id_number"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_phone_numbers_org_id_organizations"
        ),
    )
    op.create_table(
        "api_keys",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_api_keys"),
        sa.UniqueConstraint("org_id", "key_hash", name="uq_api_keys_org_id_key_hash"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_api_keys_org_id_organizations"
        ),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"])
    op.create_table(
        "consent_records",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_number_id", sa.Uuid(), nullable=False),
        sa.Column("contact_number", sa.String(16), nullable=False),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("opted_in_at", TS),
        sa.Column("opted_out_at", TS),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("consent_method", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_consent_records"),
        sa.UniqueConstraint(
            "org_id",
            "phone_number_id",
            "contact_number",
            name="uq_consent_records_org_id_phone_number_id_contact_number",
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "phone_number_id"],
            ["phone_numbers.org_id", "phone_numbers.id"],
            name="fk_consent_records_org_id_phone_number_id_phone_numbers",
        ),
    )
    for columns in (
        ["org_id", "updated_at", "id"],
        ["org_id", "contact_number", "updated_at", "id"],
        ["org_id", "phone_number_id", "updated_at", "id"],
        ["org_id", "opted_in", "updated_at", "id"],
        ["org_id", "consent_method", "updated_at", "id"],
    ):
        op.create_index("ix_consent_records_" + "_".join(columns), "consent_records", columns)
    op.create_table(
        "consent_events",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("consent_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("consent_method", sa.String(16)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("evidence", JSON),
        sa.Column("actor", JSON, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["org_id", "consent_id"],
            ["consent_records.org_id", "consent_records.id"],
            name="fk_consent_events_org_id_consent_id_consent_records",
        ),
    )
    op.create_index(
        "ix_consent_events_org_id_consent_id_created_at_id",
        "consent_events",
        ["org_id", "consent_id", "created_at", "id"],
    )
    _forbid_changes("consent_events")


def _forbid_changes(table: str) -> None:
    """History is evidence: the database itself refuses UPDATE and DELETE on it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION agentmessage_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                    USING ERRCODE = 'restrict_violation';
            END $$
            """
        )
    forbid_changes(table)


def downgrade() -> None:
    op.drop_table("consent_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agentmessage_append_only")
    op.drop_table("consent_records")
    op.drop_table("api_keys")
    op.drop_table("phone_numbers")
    op.drop_table("organizations")
