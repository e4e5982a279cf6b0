"""A sender number belongs to one organization.

Inbound SMS find their organization by the number they were sent to; with the
same number registered twice, STOPs reached the first registration only, so the
second organization's contacts could never opt out. The index on ``number``
becomes unique. Where a database already holds such a pair, the upgrade stops
and names them: which organization keeps the number is the operator's decision.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentmessage.db.migrate import MigrationRefused

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NAME = "ix_phone_numbers_number"


def upgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT number, COUNT(*) FROM phone_numbers GROUP BY number HAVING COUNT(*) > 1"
            )
        )
        .all()
    )
    if shared:
        listed = ", ".join(f"{number} ({count} organizations)" for number, count in shared)
        raise MigrationRefused(
            "migration 0013: a sender number must belong to one organization, and these "
            f"belong to several: {listed}. Remove the extra registrations, then migrate again."
        )
    op.drop_index(NAME, table_name="phone_numbers")
    op.create_index(NAME, "phone_numbers", ["number"], unique=True)


def downgrade() -> None:
    op.drop_index(NAME, table_name="phone_numbers")
    op.create_index(NAME, "phone_numbers", ["number"])
