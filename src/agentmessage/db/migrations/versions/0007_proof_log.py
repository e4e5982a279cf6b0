"""Proof log: every history event a leaf of its organization's Merkle tree.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Events recorded before this revision become the first leaves, in the order
they were recorded, so that every organization's history is in its log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentmessage.db.append_only import forbid_changes

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("log_leaves", "log_checkpoints")


def upgrade() -> None:
    op.create_table(
        "log_leaves",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("consent_id", sa.Uuid(), nullable=False),
        # The leaf hash, then the hash of every complete subtree ending here.
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        # No foreign key: a leaf is written with its organization's head row (which
        # has one) in the same transaction, and a per-row check would cost a third
        # of the leaves' COPY.
        sa.PrimaryKeyConstraint("org_id", "leaf_index", name="pk_log_leaves"),
    )
    op.create_index(
        "ix_log_leaves_org_id_consent_id_leaf_index",
        "log_leaves",
        ["org_id", "consent_id", "leaf_index"],
    )
    op.create_table(
        "log_heads",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", name="pk_log_heads"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_log_heads_org_id_organizations"
        ),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "tree_size", name="pk_log_checkpoints"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_log_checkpoints_org_id_organizations"
        ),
    )
    op.create_table(
        "log_keys",
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_log_keys"),
    )
    for table in APPEND_ONLY:
        forbid_changes(table)
    _backfill()


def _backfill() -> None:
    """Existing events become leaves 0..n-1 of their organization, oldest first.

    The tables as they are at this revision (not today's models), so that this
    migration keeps working whatever later ones change.
    """
    from agentmessage.db.base import JSONDocument, UTCDateTime
    from agentmessage.kit.clock import utcnow
    from agentmessage.proof import merkle
    from agentmessage.proof.log import document_of

    events = sa.table(
        "consent_events",
        sa.column("org_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("consent_id", sa.Uuid()),
        sa.column("type", sa.String()),
        sa.column("consent_method", sa.String()),
        sa.column("source", sa.String()),
        sa.column("reason", sa.String()),
        sa.column("evidence", JSONDocument),
        sa.column("actor", JSONDocument),
        sa.column("occurred_at", UTCDateTime()),
        sa.column("created_at", UTCDateTime()),
    )
    records = sa.table(
        "consent_records",
        sa.column("org_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("phone_number_id", sa.Uuid()),
        sa.column("contact_number", sa.String()),
    )
    leaves = sa.table(
        "log_leaves",
        sa.column("org_id", sa.Uuid()),
        sa.column("leaf_index", sa.BigInteger()),
        sa.column("event_id", sa.Uuid()),
        sa.column("consent_id", sa.Uuid()),
        sa.column("hashes", sa.LargeBinary()),
    )
    heads = sa.table(
        "log_heads",
        sa.column("org_id", sa.Uuid()),
        sa.column("size", sa.BigInteger()),
        sa.column("frontier", sa.LargeBinary()),
        sa.column("updated_at", UTCDateTime()),
    )
    bind = op.get_bind()
    statement = (
        sa.select(
            events,
            records.c.phone_number_id,
            records.c.contact_number,
            # Events of this revision are of format 1: no place in a chain.
            sa.null().label("sequence"),
            sa.null().label("previous_leaf_hash"),
        )
        .join(
            records,
            (records.c.org_id == events.c.org_id) & (records.c.id == events.c.consent_id),
        )
        .order_by(events.c.org_id, events.c.created_at, events.c.id)
    )
    state: dict[object, tuple[int, list[bytes]]] = {}
    batch: list[dict[str, object]] = []
    # All rows first: interleaving inserts with an open cursor is not portable.
    for row in bind.execute(statement).all():
        size, frontier = state.get(row.org_id, (0, []))
        document = document_of(row, row.phone_number_id, row.contact_number, None)
        hashes = merkle.append(frontier, size, merkle.leaf_hash(merkle.canonical_json(document)))
        batch.append(
            {
                "org_id": row.org_id,
                "leaf_index": size,
                "event_id": row.id,
                "consent_id": row.consent_id,
                "hashes": hashes,
            }
        )
        state[row.org_id] = (size + 1, frontier)
        if len(batch) == 2000:
            bind.execute(sa.insert(leaves), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(leaves), batch)
    if state:
        bind.execute(
            sa.insert(heads),
            [
                {"org_id": org, "size": size, "frontier": b"".join(f), "updated_at": utcnow()}
                for org, (size, f) in state.items()
            ],
        )


def downgrade() -> None:
    for table in ("log_keys", "log_checkpoints", "log_heads", "log_leaves"):
        op.drop_table(table)
