"""Proof log: every history event a leaf of its organization's Merkle tree.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Events recorded before this revision become the first leaves, in the order
they were recorded, so that every organization's history is in its log.
"""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from alembic import op
from sqlalchemy import select
from sqlalchemy.orm import Session

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
        _forbid_changes(table)
    _backfill()


def _forbid_changes(table: str) -> None:
    """Like consent_events: the database itself refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "postgresql":
        # agentmessage_append_only() exists since revision 0001.
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION agentmessage_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def _backfill() -> None:
    """Existing events become leaves 0..n-1 of their organization, oldest first."""
    from agentmessage.db.models import ConsentEvent, ConsentRecord, LogHead, LogLeaf
    from agentmessage.kit.clock import utcnow
    from agentmessage.proof import merkle
    from agentmessage.proof.log import document_of

    session = Session(bind=op.get_bind())
    statement = (
        select(ConsentEvent, ConsentRecord.phone_number_id, ConsentRecord.contact_number)
        .join(
            ConsentRecord,
            (ConsentRecord.org_id == ConsentEvent.org_id)
            & (ConsentRecord.id == ConsentEvent.consent_id),
        )
        .order_by(ConsentEvent.org_id, ConsentEvent.created_at, ConsentEvent.id)
        .execution_options(yield_per=2000)
    )
    heads: dict[object, tuple[int, list[bytes]]] = {}
    batch: list[dict[str, object]] = []
    for event, phone_number_id, contact_number in session.execute(statement):
        size, frontier = heads.get(event.org_id, (0, []))
        document = document_of(event, phone_number_id, contact_number)
        hashes = merkle.append(frontier, size, merkle.leaf_hash(merkle.canonical_json(document)))
        batch.append(
            {
                "org_id": event.org_id,
                "leaf_index": size,
                "event_id": event.id,
                "consent_id": event.consent_id,
                "hashes": hashes,
            }
        )
        heads[event.org_id] = (size + 1, frontier)
        if len(batch) == 2000:
            op.get_bind().execute(sa.insert(cast(sa.Table, LogLeaf.__table__)), batch)
            batch = []
    if batch:
        op.get_bind().execute(sa.insert(cast(sa.Table, LogLeaf.__table__)), batch)
    if heads:
        op.get_bind().execute(
            sa.insert(cast(sa.Table, LogHead.__table__)),
            [
                {"org_id": org, "size": size, "frontier": b"".join(f), "updated_at": utcnow()}
                for org, (size, f) in heads.items()
            ],
        )


def downgrade() -> None:
    for table in ("log_keys", "log_checkpoints", "log_heads", "log_leaves"):
        op.drop_table(table)
