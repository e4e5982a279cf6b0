"""Import checkpoints: how far each CSV file got, so a rerun resumes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "import_runs",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        # SHA-256 of the file's bytes: the same file resumes, an edited one starts over.
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(500), nullable=False),
        # Physical line number (header = 1) of the last row whose batch committed.
        sa.Column("committed_line", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS),
        sa.PrimaryKeyConstraint("org_id", "file_sha256", name="pk_import_runs"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_import_runs_org_id_organizations"
        ),
    )


def downgrade() -> None:
    op.drop_table("import_runs")
