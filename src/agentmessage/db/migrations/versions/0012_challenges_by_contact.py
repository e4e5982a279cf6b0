"""Challenges by contact: a send decision looks up a contact's challenges.

Without it, the pending-confirmation lookup of every check read all of the
organization's challenges (the only other index on them covers open ones, which
the lookup's "awaiting a reply at that moment" cannot use): with 200,000 past
challenges, a single-contact check fell from 2,700 to 69 per second.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME = "ix_challenges_org_id_phone_number_id_contact_number_created_at"


def upgrade() -> None:
    # In the upgrade's one transaction, as every migration here (server start
    # takes an advisory lock around it): not CONCURRENTLY, so the build holds
    # back writes to challenges. On a large table, build it by hand first with
    # CREATE INDEX CONCURRENTLY and this name; the upgrade then leaves it.
    op.create_index(
        NAME,
        "challenges",
        ["org_id", "phone_number_id", "contact_number", "created_at"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="challenges")
