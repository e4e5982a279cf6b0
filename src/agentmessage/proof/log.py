"""Each organization's append-only Merkle log of consent history, and its checkpoints.

``append`` runs inside the one write path (``record_changes``), in the same
transaction as the events: it locks the organization's head row, so leaf
indexes are handed out gap-free and in commit order whatever the number of
concurrent writers (SQLite serialises writers anyway).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol, cast

from sqlalchemy import BigInteger, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.bulk import append_rows, one_of
from agentmessage.db.models import LogCheckpoint, LogHead, LogKey, LogLeaf
from agentmessage.db.upsert import insert_or_ignore
from agentmessage.kit.clock import utcnow
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.proof import merkle
from agentmessage.proof.keys import Signer
from agentmessage.proof.verify import EVENT_FORMAT, EVENT_FORMATS, leaf_hash

EVENT_FORMAT_1 = EVENT_FORMATS[0]


def event_document(
    *,
    org_id: uuid.UUID,
    event_id: uuid.UUID,
    consent_id: uuid.UUID,
    phone_number_id: uuid.UUID,
    contact_number: str,
    type: str,
    consent_method: str | None,
    source: str,
    reason: str,
    evidence: dict[str, Any] | None,
    actor: dict[str, Any],
    occurred_at: datetime,
    created_at: datetime | str,
    sender_number: str | None,
    sequence: int | None,
    previous_leaf_hash: bytes | None,
) -> dict[str, Any]:
    """The event as the log holds it: its leaf is SHA-256(0x00 || RFC 8785 of this).

    Format 2 (``sequence`` given) adds the sender's number, the event's place in
    its record's history and the leaf hash of the record's event before it;
    events written before it (``sequence`` None) keep format 1, as they were
    hashed. ``created_at`` may come formatted: a batch's events share it.
    """
    document: dict[str, Any] = {
        "format": EVENT_FORMAT_1,
        "org_id": _text(org_id),
        "id": str(event_id),
        "consent_id": str(consent_id),
        "phone_number_id": _text(phone_number_id),
        "contact_number": contact_number,
        "type": type,
        "consent_method": consent_method,
        "source": source,
        "reason": reason,
        "evidence": evidence,
        "actor": actor,
        "occurred_at": format_rfc3339(occurred_at),
        "created_at": created_at if isinstance(created_at, str) else format_rfc3339(created_at),
    }
    if sequence is not None:
        document["format"] = EVENT_FORMAT
        document["sender_number"] = sender_number
        document["sequence"] = sequence
        document["previous"] = (
            base64.b64encode(previous_leaf_hash).decode() if previous_leaf_hash else None
        )
    return document


@lru_cache(maxsize=4096)
def _text(shared_id: uuid.UUID) -> str:
    """An organization's or a sender number's id as text: the same few for every
    event of a batch, and ``str`` of a standard UUID is written in Python."""
    return str(shared_id)


class EventRow(Protocol):
    """What an event document is made of: a history event's columns (an ORM
    event or a result row) with its record's sender number and contact."""

    org_id: uuid.UUID
    id: uuid.UUID
    consent_id: uuid.UUID
    type: str
    consent_method: str | None
    source: str
    reason: str
    evidence: dict[str, Any] | None
    actor: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    sequence: int | None
    previous_leaf_hash: bytes | None


def document_of(
    event: EventRow, phone_number_id: uuid.UUID, contact_number: str, sender_number: str | None
) -> dict[str, Any]:
    return event_document(
        org_id=event.org_id,
        event_id=event.id,
        consent_id=event.consent_id,
        phone_number_id=phone_number_id,
        contact_number=contact_number,
        type=event.type,
        consent_method=event.consent_method,
        source=event.source,
        reason=event.reason,
        evidence=event.evidence,
        actor=event.actor,
        occurred_at=event.occurred_at,
        created_at=event.created_at,
        sender_number=sender_number,
        sequence=event.sequence,
        previous_leaf_hash=event.previous_leaf_hash,
    )


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    frontier: list[bytes]

    @property
    def root(self) -> bytes:
        return merkle.root(self.frontier)


async def head(session: AsyncSession, org: OrgScope, *, lock: bool = False) -> Head:
    statement = select(LogHead.size, LogHead.frontier).where(LogHead.org_id == org)
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).one_or_none()
    if row is None and lock:
        await session.execute(
            insert_or_ignore(session, LogHead).values(
                org_id=org, size=0, frontier=b"", updated_at=utcnow()
            )
        )
        row = (await session.execute(statement)).one()
    if row is None:
        return Head(0, [])
    return Head(row.size, merkle.split_frontier(row.frontier))


# What an event document holds as given (any JSON); event_document makes every
# other member a string or null.
_GIVEN = ("evidence", "actor")


def leaf_of(document: dict[str, Any]) -> bytes:
    """An event document's leaf hash: SHA-256(0x00 || RFC 8785 of it)."""
    return leaf_hash(merkle.canonical_json(document, only=_GIVEN))


async def append(
    session: AsyncSession,
    org: OrgScope,
    current: Head,
    entries: Sequence[tuple[uuid.UUID, uuid.UUID, bytes]],
) -> list[int]:
    """Append (event id, consent id, leaf hash) leaves in order after ``current``,
    the head as read with ``head(..., lock=True)`` in this transaction; their
    indexes. The leaf hashes come computed (``leaf_of``)."""
    if not entries:
        return []
    frontier, size = list(current.frontier), current.size
    rows: list[dict[str, Any]] = []
    first = size
    for event_id, consent_id, leaf in entries:
        hashes = merkle.append(frontier, size, leaf)
        rows.append(
            {
                "org_id": org,
                "leaf_index": size,
                "event_id": event_id,
                "consent_id": consent_id,
                "hashes": hashes,
            }
        )
        size += 1
    await append_rows(session, cast(Table, LogLeaf.__table__), rows)
    await session.execute(
        update(LogHead)
        .where(LogHead.org_id == org)
        .values(size=size, frontier=b"".join(frontier), updated_at=utcnow())
    )
    return list(range(first, size))


# Checkpoints.


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The body of a C2SP tlog-checkpoint."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def origin_of(prefix: str, org: uuid.UUID) -> str:
    return f"{prefix}/log/{org}"


async def publish_key(session: AsyncSession, signer: Signer) -> None:
    await session.execute(
        insert_or_ignore(session, LogKey).values(
            key_id=signer.key_id,
            name=signer.public.name,
            public_key=signer.public.raw,
            created_at=utcnow(),
        )
    )


async def latest_checkpoint(session: AsyncSession, org: OrgScope) -> LogCheckpoint | None:
    statement = (
        select(LogCheckpoint)
        .where(LogCheckpoint.org_id == org)
        .order_by(LogCheckpoint.tree_size.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


async def checkpoint(
    session: AsyncSession, org: OrgScope, signer: Signer, origin_prefix: str
) -> LogCheckpoint:
    """The latest checkpoint, signed now if the log grew since the last one.

    O(log n): the root comes from the head's frontier. Flushes, never commits.
    """
    current = await head(session, org)
    latest = await latest_checkpoint(session, org)
    if latest is not None and latest.tree_size >= current.size:
        return latest
    root = current.root
    note = signer.sign_note(checkpoint_text(origin_of(origin_prefix, org), current.size, root))
    await publish_key(session, signer)
    # Two requests may sign the same size at once: Ed25519 is deterministic, so
    # both made the same note and the second insert is a no-op.
    await session.execute(
        insert_or_ignore(session, LogCheckpoint).values(
            org_id=org,
            tree_size=current.size,
            root_hash=root,
            note=note,
            key_id=signer.key_id,
            created_at=utcnow(),
        )
    )
    made = await session.get(LogCheckpoint, (org, current.size), populate_existing=True)
    assert made is not None
    return made


async def orgs_needing_checkpoint(session: AsyncSession) -> list[uuid.UUID]:
    """Organizations whose log grew past their latest checkpoint."""
    latest = (
        select(LogCheckpoint.org_id, func.max(LogCheckpoint.tree_size).label("size"))
        .group_by(LogCheckpoint.org_id)
        .subquery()
    )
    statement = (
        select(LogHead.org_id)
        .outerjoin(latest, latest.c.org_id == LogHead.org_id)
        .where(LogHead.size > func.coalesce(latest.c.size, -1))
    )
    return list((await session.scalars(statement)).all())


# Reading nodes for proofs.


async def nodes(
    session: AsyncSession, org: OrgScope, wanted: Iterable[merkle.NodeKey]
) -> dict[merkle.NodeKey, bytes]:
    """The stored hashes of aligned subtrees, read in one query."""
    keys = list(wanted)
    if not keys:
        return {}
    rows_wanted = sorted({merkle.node_row(level, index) for level, index in keys})
    match = one_of(session, LogLeaf.leaf_index, rows_wanted, BigInteger())
    statement = select(LogLeaf.leaf_index, LogLeaf.hashes).where(LogLeaf.org_id == org, match)
    blobs = {row.leaf_index: row.hashes for row in await session.execute(statement)}
    found: dict[merkle.NodeKey, bytes] = {}
    for level, index in keys:
        blob = blobs.get(merkle.node_row(level, index))
        if blob is not None and len(blob) >= (level + 1) * 32:
            found[(level, index)] = blob[level * 32 : (level + 1) * 32]
    return found


class MissingNode(Exception):
    """A subtree hash the log should hold is not there (a deleted leaf row)."""


async def prove(
    session: AsyncSession,
    org: OrgScope,
    size: int,
    leaves: Sequence[int],
    since: int | None = None,
) -> tuple[dict[int, list[bytes]], list[bytes]]:
    """Inclusion proofs of ``leaves`` in the tree of ``size``, and the consistency
    proof from ``since`` to ``size`` (empty without ``since``), from one read."""

    def compute(prover: merkle.Prover) -> tuple[dict[int, list[bytes]], list[bytes]]:
        paths = {i: prover.inclusion_path(i, size) for i in leaves}
        proof = prover.consistency_proof(since, size) if since is not None else []
        return paths, proof

    stored = await nodes(session, org, merkle.nodes_needed(compute))

    def node(level: int, index: int) -> bytes:
        try:
            return stored[(level, index)]
        except KeyError:
            raise MissingNode(f"node {level}/{index}") from None

    return compute(merkle.Prover(node))


async def subtree_root(session: AsyncSession, org: OrgScope, size: int) -> bytes:
    """The root of the tree's first ``size`` leaves (O(log n) stored nodes)."""

    def compute(prover: merkle.Prover) -> bytes:
        return prover.subtree_root(0, size)

    stored = await nodes(session, org, merkle.nodes_needed(compute))
    return compute(merkle.Prover(lambda level, index: stored[(level, index)]))
