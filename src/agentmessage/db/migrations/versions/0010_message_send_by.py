"""Messages that must go by a deadline or not at all (opt-out confirmations).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("send_by", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("send_by")
