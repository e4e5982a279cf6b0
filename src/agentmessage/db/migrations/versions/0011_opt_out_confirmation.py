"""Each organization's fixed opt-out confirmation text.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("opt_out_confirmation", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("opt_out_confirmation")
