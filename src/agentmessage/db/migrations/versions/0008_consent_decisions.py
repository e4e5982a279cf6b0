"""Send decisions: every consent check and its answers, append-only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER consent_decisions_append_only BEFORE UPDATE OR DELETE "
            "ON consent_decisions FOR EACH ROW EXECUTE FUNCTION agentmessage_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER consent_decisions_no_{action.lower()} BEFORE {action} "
            "ON consent_decisions "
            "BEGIN SELECT RAISE(ABORT, 'consent_decisions is append-only'); END"
        )


def downgrade() -> None:
    op.drop_table("consent_decisions")
