"""Reads and writes of consent rows. Every method takes the caller's ``OrgScope``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.models import ConsentEvent, ConsentRecord, PhoneNumber
from agentmessage.db.upsert import insert_or_ignore


@dataclass(frozen=True, slots=True)
class ListFilters:
    contact_number: str | None = None
    phone_number_id: uuid.UUID | None = None
    opted_in: bool | None = None
    since: datetime | None = None
    consent_method: str | None = None


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
        statement = select(ConsentRecord).where(
            ConsentRecord.org_id == org, ConsentRecord.id == consent_id
        )
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).one_or_none()

    async def get_by_contact(
        self, org: OrgScope, phone_number_id: uuid.UUID, contact_number: str
    ) -> ConsentRecord | None:
        """The record, locked for update (PostgreSQL; SQLite holds the write lock)."""
        statement = (
            select(ConsentRecord)
            .where(
                ConsentRecord.org_id == org,
                ConsentRecord.phone_number_id == phone_number_id,
                ConsentRecord.contact_number == contact_number,
            )
            .with_for_update()
            # A row inserted by a concurrent request must be read, not a stale copy.
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def insert_if_absent(self, record: ConsentRecord) -> bool:
        """Insert unless a record for that contact exists; True if this call inserted it."""
        values = {
            column.key: getattr(record, column.key) for column in ConsentRecord.__table__.columns
        }
        result = await self.session.execute(
            insert_or_ignore(self.session, ConsentRecord).values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def add_event(self, event: ConsentEvent) -> None:
        self.session.add(event)

    async def flush(self) -> None:
        await self.session.flush()

    async def events(self, org: OrgScope, consent_id: uuid.UUID) -> Sequence[ConsentEvent]:
        statement = (
            select(ConsentEvent)
            .where(ConsentEvent.org_id == org, ConsentEvent.consent_id == consent_id)
            .order_by(ConsentEvent.created_at, ConsentEvent.id)
        )
        return (await self.session.scalars(statement)).all()

    async def page(
        self, org: OrgScope, filters: ListFilters, after: Position | None, limit: int
    ) -> Sequence[ConsentRecord]:
        """Up to ``limit`` records after ``after``, newest change first (a keyset scan)."""
        statement = select(ConsentRecord).where(
            *self._conditions(org, filters)
        )
        if after is not None:
            statement = statement.where(_sort_key() < _position(after))
        statement = statement.order_by(
            ConsentRecord.updated_at.desc(), ConsentRecord.id.desc()
        ).limit(limit)
        return (await self.session.scalars(statement)).all()

    async def count(
        self, org: OrgScope, filters: ListFilters, after: Position | None
    ) -> tuple[int, int]:
        """(records matching the filters, how many of them precede the page after ``after``).

        One scan whatever the depth of the page, so deep pages cost what the first does.
        """
        conditions = self._conditions(org, filters)
        if after is None:
            total = await self.session.scalar(select(func.count()).where(*conditions))
            return int(total or 0), 0
        before = func.coalesce(func.sum(case((_sort_key() >= _position(after), 1), else_=0)), 0)
        row = (await self.session.execute(select(func.count(), before).where(*conditions))).one()
        return int(row[0]), int(row[1])

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


def _sort_key() -> ColumnElement[tuple[datetime, uuid.UUID]]:
    return tuple_(ConsentRecord.updated_at, ConsentRecord.id)


def _position(position: Position) -> ColumnElement[tuple[datetime, uuid.UUID]]:
    # Typed like the columns, so SQLite compares the same text it stores.
    return tuple_(
        literal(position.updated_at, ConsentRecord.__table__.c.updated_at.type),
        literal(position.id, ConsentRecord.__table__.c.id.type),
    )
