"""Reads and writes of consent rows. Every method takes the caller's ``OrgScope``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.bulk import append_rows, insert_returning_new
from agentmessage.db.models import ConsentEvent, ConsentRecord, LogLeaf, PhoneNumber

T = TypeVar("T")

LEAF_OF_EVENT: Final = and_(
    LogLeaf.org_id == ConsentEvent.org_id,
    LogLeaf.consent_id == ConsentEvent.consent_id,  # a record's leaves come by index
    LogLeaf.event_id == ConsentEvent.id,
)
"""The join of history events to their leaves in the organization's log."""

EVENT_OF_RECORD: Final = and_(
    ConsentEvent.org_id == ConsentRecord.org_id, ConsentEvent.consent_id == ConsentRecord.id
)
"""The join of history events to their record (for a query that needs both)."""


@dataclass(frozen=True, slots=True)
class ListFilters:
    contact_number: str | None = None
    phone_number_id: uuid.UUID | None = None
    opted_in: bool | None = None
    since: datetime | None = None
    consent_method: str | None = None


class ContactKey(NamedTuple):
    """What makes a consent record unique within an organization."""

    phone_number_id: uuid.UUID
    contact_number: str


@dataclass(frozen=True, slots=True)
class ConsentState:
    """A consent record's columns, as the capture rules see them."""

    org_id: uuid.UUID
    id: uuid.UUID
    phone_number_id: uuid.UUID
    contact_number: str
    opted_in: bool
    opted_in_at: datetime | None
    opted_out_at: datetime | None
    source: str
    consent_method: str
    created_at: datetime
    updated_at: datetime
    # The head of its history in the proof log, which its next event names.
    event_count: int
    last_leaf_hash: bytes | None

    @classmethod
    def of(cls, record: ConsentRecord) -> ConsentState:
        return cls(**{name: getattr(record, name) for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends in the (updated_at DESC, id DESC) order."""

    updated_at: datetime
    id: uuid.UUID


class ConsentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def phone_number(self, org: OrgScope, phone_number_id: uuid.UUID) -> PhoneNumber | None:
        return await self.session.get(PhoneNumber, (org, phone_number_id))

    async def get(
        self, org: OrgScope, consent_id: uuid.UUID, *, for_update: bool = False
    ) -> ConsentRecord | None:
        # By primary key: the ORM's cached statement, cheaper than building a select.
        return await self.session.get(
            ConsentRecord, (org, consent_id), with_for_update=for_update or None
        )

    async def known_phone_numbers(
        self, org: OrgScope, phone_number_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """Which of these ids are sender numbers of the organization, with their numbers."""
        ids = list(set(phone_number_ids))
        if not ids:
            return {}
        rows = await self.session.execute(
            select(PhoneNumber.id, PhoneNumber.number).where(
                PhoneNumber.org_id == org, PhoneNumber.id.in_(ids)
            )
        )
        return {number_id: number for number_id, number in rows}

    async def lock_states(
        self, org: OrgScope, keys: Sequence[ContactKey]
    ) -> dict[ContactKey, ConsentState]:
        """The records of these contacts, locked until commit (PostgreSQL; SQLite
        write transactions hold the database lock already)."""
        found: dict[ContactKey, ConsentState] = {}
        wanted = set(keys)
        columns = [ConsentRecord.__table__.c[name] for name in ConsentState.__slots__]
        for chunk in _chunks(sorted(wanted), 500):
            # Two IN lists ride the unique (org, number, contact) index; the pairs
            # are then matched exactly here.
            statement = (
                select(*columns)
                .where(
                    ConsentRecord.org_id == org,
                    ConsentRecord.phone_number_id.in_({k.phone_number_id for k in chunk}),
                    ConsentRecord.contact_number.in_({k.contact_number for k in chunk}),
                )
                .with_for_update()
            )
            for row in await self.session.execute(statement):
                key = ContactKey(row.phone_number_id, row.contact_number)
                if key in wanted:
                    found[key] = ConsentState(**row._mapping)
        return found

    async def opted_in_states(
        self, org: OrgScope, contact_numbers: Sequence[str]
    ) -> list[ConsentState]:
        """Opted-in records of these contacts, for any sender number."""
        columns = [ConsentRecord.__table__.c[name] for name in ConsentState.__slots__]
        found: list[ConsentState] = []
        for chunk in _chunks(sorted(set(contact_numbers)), 500):
            statement = select(*columns).where(
                ConsentRecord.org_id == org,
                ConsentRecord.contact_number.in_(chunk),
                ConsentRecord.opted_in.is_(True),
            )
            found += [ConsentState(**row._mapping) for row in await self.session.execute(statement)]
        return found

    async def sender_numbers(self, org: OrgScope) -> dict[uuid.UUID, str]:
        rows = await self.session.execute(
            select(PhoneNumber.id, PhoneNumber.number).where(PhoneNumber.org_id == org)
        )
        return {number_id: number for number_id, number in rows}

    async def latest_evidence(
        self, org: OrgScope, consent_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ConsentEvent]:
        """For each record, its latest event with evidence (else its latest event)."""
        statement = _in_log_order(
            select(ConsentEvent).where(
                ConsentEvent.org_id == org, ConsentEvent.consent_id.in_(consent_ids)
            )
        )
        latest: dict[uuid.UUID, ConsentEvent] = {}
        for event in await self.session.scalars(statement):
            known = latest.get(event.consent_id)
            if event.evidence or known is None or not known.evidence:
                latest[event.consent_id] = event
        return latest

    async def insert_states(self, states: Sequence[ConsentState]) -> set[uuid.UUID]:
        """Insert new records unless their contact exists; the ids actually inserted."""
        if not states:
            return set()
        table = cast(Table, ConsentRecord.__table__)
        columns = {name: list(map(attrgetter(name), states)) for name in ConsentState.__slots__}
        return set(await insert_returning_new(self.session, table, columns, "id"))

    async def update_states(self, org: OrgScope, states: Sequence[ConsentState]) -> None:
        """Write the new state of existing records: one executemany statement."""
        if not states:
            return
        table = cast(Table, ConsentRecord.__table__)
        statement = (
            update(table)
            .where(table.c.org_id == bindparam("b_org_id"), table.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in _MUTABLE})
        )
        await self.session.execute(
            statement,
            [
                {"b_org_id": org, "b_id": s.id, **{name: getattr(s, name) for name in _MUTABLE}}
                for s in states
            ],
        )

    async def insert_events(self, events: Sequence[dict[str, Any]]) -> None:
        # COPY on PostgreSQL, one compiled executemany on SQLite.
        await append_rows(self.session, cast(Table, ConsentEvent.__table__), events)

    async def events(self, org: OrgScope, consent_id: uuid.UUID) -> Sequence[ConsentEvent]:
        """The record's events in commit order: the order of their leaves in the log."""
        statement = _in_log_order(
            select(ConsentEvent).where(
                ConsentEvent.org_id == org, ConsentEvent.consent_id == consent_id
            )
        )
        return (await self.session.scalars(statement)).all()

    async def page(
        self, org: OrgScope, filters: ListFilters, after: Position | None, limit: int
    ) -> Sequence[ConsentRecord]:
        """Up to ``limit`` records after ``after``, newest change first (a keyset scan)."""
        statement = select(ConsentRecord).where(*self._conditions(org, filters))
        if after is not None:
            statement = statement.where(_sort_key() < _position(after))
        statement = statement.order_by(
            ConsentRecord.updated_at.desc(), ConsentRecord.id.desc()
        ).limit(limit)
        return (await self.session.scalars(statement)).all()

    async def count(self, org: OrgScope, filters: ListFilters) -> int:
        """How many records match the filters (exact; one index-only scan)."""
        statement = select(func.count()).where(*self._conditions(org, filters))
        return int(await self.session.scalar(statement) or 0)

    @staticmethod
    def _conditions(org: OrgScope, filters: ListFilters) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [ConsentRecord.org_id == org]
        if filters.contact_number is not None:
            conditions.append(ConsentRecord.contact_number == filters.contact_number)
        if filters.phone_number_id is not None:
            conditions.append(ConsentRecord.phone_number_id == filters.phone_number_id)
        if filters.opted_in is not None:
            conditions.append(ConsentRecord.opted_in == filters.opted_in)
        if filters.since is not None:
            conditions.append(ConsentRecord.updated_at >= filters.since)
        if filters.consent_method is not None:
            conditions.append(ConsentRecord.consent_method == filters.consent_method)
        return conditions


_MUTABLE = (
    "opted_in",
    "opted_in_at",
    "opted_out_at",
    "source",
    "consent_method",
    "updated_at",
    "event_count",
    "last_leaf_hash",
)


def _in_log_order(statement: Select[ConsentEvent]) -> Select[ConsentEvent]:
    """Events in the order their transactions committed: by leaf index, which the
    log hands out gap-free under the organization's head lock. Never by a clock:
    two servers, or one stepped by NTP, can disagree on it. An event without a
    leaf (written behind the log's back) comes last, so that it is still seen."""
    return statement.outerjoin(LogLeaf, LEAF_OF_EVENT).order_by(
        LogLeaf.leaf_index.asc().nulls_last(), ConsentEvent.id
    )


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sort_key() -> ColumnElement[tuple[datetime, uuid.UUID]]:
    return tuple_(ConsentRecord.updated_at, ConsentRecord.id)


def _position(position: Position) -> ColumnElement[tuple[datetime, uuid.UUID]]:
    # Typed like the columns, so SQLite compares the same text it stores.
    return tuple_(
        literal(position.updated_at, ConsentRecord.__table__.c.updated_at.type),
        literal(position.id, ConsentRecord.__table__.c.id.type),
    )
