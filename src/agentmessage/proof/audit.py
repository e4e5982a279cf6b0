"""``agentmessage proof audit``: rebuild an organization's whole log from its event
table and hold it against every stored leaf, subtree hash, head and checkpoint;
then walk each record's story and hold it against the record.

Two passes in constant memory: in leaf order (the frontier, never the leaves),
then record by record (one record's chain at a time). The first divergence is
named by its leaf, the way an auditor reports it.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database
from agentmessage.db.models import (
    ConsentEvent,
    ConsentRecord,
    LogCheckpoint,
    LogLeaf,
    PhoneNumber,
)
from agentmessage.proof import log, merkle
from agentmessage.proof.service import published_keys
from agentmessage.proof.verify import PublicKey, derive_record, parse_checkpoint, verify_note


@dataclass(slots=True)
class AuditReport:
    org_id: str
    leaves: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_leaf: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str, leaf: int | None = None) -> None:
        self.problems.append(message)
        if leaf is not None and (self.first_bad_leaf is None or leaf < self.first_bad_leaf):
            self.first_bad_leaf = leaf

    def as_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "ok": self.ok,
            "leaves": self.leaves,
            "checkpoints_checked": self.checkpoints,
            "first_bad_leaf": self.first_bad_leaf,
            "problems": self.problems[:50],
        }


async def audit(
    database: Database,
    org_id: uuid.UUID,
    *,
    saved_checkpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    org = OrgScope(org_id)
    report = AuditReport(str(org_id))
    async with database.session(writes=False) as session:
        current = await log.head(session, org)
        keys = {key.key_id: key for key in await published_keys(session)}
        checkpoints = list(
            (
                await session.scalars(
                    select(LogCheckpoint)
                    .where(LogCheckpoint.org_id == org)
                    .order_by(LogCheckpoint.tree_size)
                )
            ).all()
        )
        for checkpoint in checkpoints:
            _check_signature(report, checkpoint.note, checkpoint.tree_size, keys, org_id)
        due: dict[int, LogCheckpoint | _Saved] = {c.tree_size: c for c in checkpoints}
        saved = _saved(report, saved_checkpoint, keys, org_id)
        if saved is not None:
            due.setdefault(saved[0], saved[1])

        statement = (
            select(
                LogLeaf.leaf_index,
                LogLeaf.event_id,
                LogLeaf.hashes,
                ConsentEvent.org_id,
                ConsentEvent.id,
                ConsentEvent.consent_id,
                ConsentEvent.type,
                ConsentEvent.consent_method,
                ConsentEvent.source,
                ConsentEvent.reason,
                ConsentEvent.evidence,
                ConsentEvent.actor,
                ConsentEvent.occurred_at,
                ConsentEvent.created_at,
                ConsentEvent.sequence,
                ConsentEvent.previous_leaf_hash,
                ConsentRecord.phone_number_id,
                ConsentRecord.contact_number,
                PhoneNumber.number.label("sender_number"),
            )
            .outerjoin(
                ConsentEvent,
                and_(ConsentEvent.org_id == LogLeaf.org_id, ConsentEvent.id == LogLeaf.event_id),
            )
            .outerjoin(
                ConsentRecord,
                and_(
                    ConsentRecord.org_id == LogLeaf.org_id,
                    ConsentRecord.id == LogLeaf.consent_id,
                ),
            )
            .outerjoin(
                PhoneNumber,
                and_(
                    PhoneNumber.org_id == ConsentRecord.org_id,
                    PhoneNumber.id == ConsentRecord.phone_number_id,
                ),
            )
            .where(LogLeaf.org_id == org)
            .order_by(LogLeaf.leaf_index)
            .execution_options(yield_per=2000)
        )
        frontier: list[bytes] = []
        size = 0
        if 0 in due:
            _check_root(report, due.pop(0), 0, merkle.EMPTY_ROOT)
        async for row in await session.stream(statement):
            index = row.leaf_index
            if index != size:
                report.fail(f"leaf {size}: missing (the next leaf stored is {index})", leaf=size)
                break
            if row.id is None:
                report.fail(f"leaf {index}: its event {row.event_id} is missing", leaf=index)
                break
            document = log.document_of(
                row, row.phone_number_id, row.contact_number, row.sender_number
            )
            hashes = merkle.append(frontier, size, log.leaf_of(document))
            if row.hashes[:32] != hashes[:32]:
                report.fail(
                    f"leaf {index}: event {row.event_id} differs from what the log recorded",
                    leaf=index,
                )
                break
            if row.hashes != hashes:
                report.fail(f"leaf {index}: its stored subtree hashes were altered", leaf=index)
                break
            size += 1
            if size in due:
                _check_root(report, due.pop(size), size, merkle.root(frontier))
                if not report.ok:
                    break
            if progress is not None and size % 2000 == 0:
                progress(size, current.size)
        report.leaves = size
        report.checkpoints = len(checkpoints)
        if report.ok:
            if size != current.size or b"".join(frontier) != b"".join(current.frontier):
                report.fail(
                    f"leaf {min(size, current.size)}: the log's head says {current.size} "
                    f"leaves but {size} are stored",
                    leaf=min(size, current.size),
                )
            for tree_size in sorted(due):
                report.fail(
                    f"leaf {size}: a checkpoint covers {tree_size} leaves but the log holds "
                    f"only {size}: it was rolled back",
                    leaf=size,
                )
            orphans = await _events_without_leaves(session, org)
            for event_id, created_at in orphans:
                report.fail(f"event {event_id} (recorded {created_at}) is in no leaf of the log")
        if report.ok:
            await _audit_record_heads(session, org, report)
        if progress is not None:
            progress(size, current.size)
    return report


def _check_signature(
    report: AuditReport, note: str, size: int, keys: dict[str, PublicKey], org_id: uuid.UUID
) -> None:
    try:
        checkpoint = parse_checkpoint(note)
    except (ValueError, binascii.Error) as exc:
        report.fail(f"checkpoint at size {size}: unreadable ({exc})", leaf=size)
        return
    if checkpoint.size != size or not checkpoint.origin.endswith(f"/{org_id}"):
        report.fail(f"checkpoint at size {size}: its note names another tree", leaf=size)
        return
    for key in keys.values():
        try:
            verify_note(note, key)
            return
        except ValueError:
            continue
    report.fail(
        f"checkpoint at size {size}: not signed by any published log key", leaf=max(size - 1, 0)
    )


def _saved(
    report: AuditReport, note: str | None, keys: dict[str, PublicKey], org_id: uuid.UUID
) -> tuple[int, _Saved] | None:
    if note is None:
        return None
    try:
        checkpoint = parse_checkpoint(note)
    except (ValueError, binascii.Error) as exc:
        report.fail(f"the saved checkpoint is unreadable: {exc}")
        return None
    _check_signature(report, note, checkpoint.size, keys, org_id)
    return checkpoint.size, _Saved(checkpoint.size, checkpoint.root, note)


@dataclass(frozen=True, slots=True)
class _Saved:
    """A checkpoint the auditor kept, held against the log like a stored one."""

    tree_size: int
    root_hash: bytes
    note: str


def _check_root(
    report: AuditReport, checkpoint: LogCheckpoint | _Saved, size: int, root: bytes
) -> None:
    if checkpoint.root_hash != root:
        report.fail(
            f"leaf {size - 1}: the tree of {size} leaves rebuilt from the events does not "
            f"match the checkpoint at size {size}",
            leaf=max(size - 1, 0),
        )
        return
    try:
        if parse_checkpoint(checkpoint.note).root != root:
            report.fail(f"checkpoint at size {size}: its note's root differs", leaf=size - 1)
    except (ValueError, binascii.Error):
        pass


async def _events_without_leaves(session: Any, org: OrgScope) -> list[tuple[uuid.UUID, Any]]:
    statement = (
        select(ConsentEvent.id, ConsentEvent.created_at)
        .outerjoin(
            LogLeaf,
            and_(LogLeaf.org_id == ConsentEvent.org_id, LogLeaf.event_id == ConsentEvent.id),
        )
        .where(ConsentEvent.org_id == org, LogLeaf.leaf_index.is_(None))
        .order_by(ConsentEvent.created_at)
        .limit(50)
    )
    return [(row.id, row.created_at) for row in await session.execute(statement)]


# The state a record's columns must hold, as its events leave it (verify.derive_record).
_STATE = ("opted_in", "opted_in_at", "opted_out_at", "source", "consent_method", "updated_at")


async def _audit_record_heads(session: Any, org: OrgScope, report: AuditReport) -> None:
    """Each record's events, in log order: format-2 events name their place and
    the leaf before them, and the record's head and state are what they leave."""
    statement = (
        select(
            ConsentRecord.id.label("record_id"),
            ConsentRecord.event_count,
            ConsentRecord.last_leaf_hash,
            *(ConsentRecord.__table__.c[name].label(f"record_{name}") for name in _STATE),
            LogLeaf.leaf_index,
            LogLeaf.hashes,
            ConsentEvent.consent_id,
            ConsentEvent.type,
            ConsentEvent.consent_method,
            ConsentEvent.source,
            ConsentEvent.occurred_at,
            ConsentEvent.created_at,
            ConsentEvent.sequence,
            ConsentEvent.previous_leaf_hash,
        )
        .outerjoin(
            LogLeaf,
            and_(LogLeaf.org_id == ConsentRecord.org_id, LogLeaf.consent_id == ConsentRecord.id),
        )
        .outerjoin(
            ConsentEvent,
            and_(ConsentEvent.org_id == LogLeaf.org_id, ConsentEvent.id == LogLeaf.event_id),
        )
        .where(ConsentRecord.org_id == org)
        .order_by(ConsentRecord.id, LogLeaf.leaf_index)
        .execution_options(yield_per=2000)
    )
    record: Any = None
    chain: list[Any] = []
    async for row in await session.stream(statement):
        if record is not None and row.record_id != record.record_id:
            _check_record(report, record, chain)
            chain = []
        record = row
        if row.leaf_index is not None:
            chain.append(row)
        if len(report.problems) >= 50:
            return
    if record is not None:
        _check_record(report, record, chain)


def _check_record(report: AuditReport, record: Any, chain: list[Any]) -> None:
    name = f"record {record.record_id}"
    if not chain:
        report.fail(f"{name}: has no event in the log")
        return
    previous: bytes | None = None
    for position, leaf in enumerate(chain, start=1):
        if leaf.sequence is not None and (
            leaf.sequence != position or leaf.previous_leaf_hash != previous
        ):
            report.fail(
                f"leaf {leaf.leaf_index}: {name}'s event {position} names itself event "
                f"{leaf.sequence} after another predecessor: its story has a gap",
                leaf=leaf.leaf_index,
            )
            return
        previous = leaf.hashes[:32]
    if record.event_count != len(chain) or record.last_leaf_hash != previous:
        report.fail(
            f"{name}: its head says {record.event_count} events, the log holds {len(chain)}",
            leaf=chain[-1].leaf_index,
        )
        return
    derived = derive_record([leaf._mapping for leaf in chain])
    wrong = [field for field in _STATE if getattr(record, f"record_{field}") != derived[field]]
    if wrong:
        report.fail(
            f"{name}: {', '.join(wrong)} differ from what its events leave",
            leaf=chain[-1].leaf_index,
        )
