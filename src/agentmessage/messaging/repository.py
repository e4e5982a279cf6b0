"""Reads and writes of messages, delivery attempts and challenges.

Every method reading an organization's rows takes its ``OrgScope``. Three reads
cannot: they are how the organization is found in the first place, and live in
``ProviderLookups`` and ``OutboxRepository`` where they are easy to see: the
number an inbound SMS was sent to, a provider's message id in a status callback
(both from requests whose provider signature is the credential), and the
dispatcher's queue, which serves every organization.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.models import (
    OPEN,
    Challenge,
    ConsentRecord,
    Message,
    MessageAttempt,
    Organization,
    PhoneNumber,
)
from agentmessage.db.upsert import insert_or_ignore
from agentmessage.kit.ids import new_id


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, org: OrgScope, message_id: uuid.UUID) -> Message | None:
        return await self.session.scalar(
            select(Message).where(Message.org_id == org, Message.id == message_id)
        )

    async def get_many(self, org: OrgScope, message_ids: Sequence[uuid.UUID]) -> list[Message]:
        if not message_ids:
            return []
        rows = await self.session.scalars(
            select(Message)
            .where(Message.org_id == org, Message.id.in_(message_ids))
            .order_by(Message.id)
        )
        return list(rows)

    async def add(self, message: Message) -> None:
        self.session.add(message)
        await self.session.flush()

    async def add_unless_known(self, message: Message) -> bool:
        """Insert an inbound message unless its provider's id is known: False then."""
        table = cast(Table, Message.__table__)
        row = {column.key: getattr(message, column.key) for column in table.columns}
        inserted = await self.session.execute(
            insert_or_ignore(self.session, table).values(**row).returning(table.c.id)
        )
        return inserted.first() is not None

    async def by_provider_id(
        self, org: OrgScope, provider: str, provider_message_id: str
    ) -> Message | None:
        return await self.session.scalar(
            select(Message).where(
                Message.org_id == org,
                Message.provider == provider,
                Message.provider_message_id == provider_message_id,
            )
        )

    async def set_status(
        self,
        org: OrgScope,
        message_id: uuid.UUID,
        status: str,
        error_code: str | None,
        at: datetime,
    ) -> None:
        await self.session.execute(
            update(Message)
            .where(Message.org_id == org, Message.id == message_id)
            .values(status=status, error_code=error_code, updated_at=at)
        )

    async def is_opted_out(self, org: OrgScope, phone_number_id: uuid.UUID, contact: str) -> bool:
        opted_in = await self.session.scalar(
            select(ConsentRecord.opted_in).where(
                ConsentRecord.org_id == org,
                ConsentRecord.phone_number_id == phone_number_id,
                ConsentRecord.contact_number == contact,
            )
        )
        return opted_in is False

    async def sender_by_number(self, org: OrgScope, number: str) -> PhoneNumber | None:
        return await self.session.scalar(
            select(PhoneNumber).where(PhoneNumber.org_id == org, PhoneNumber.number == number)
        )

    async def organization(self, org: OrgScope) -> Organization | None:
        return await self.session.get(Organization, org)


class ChallengeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def expire_overdue(
        self, org: OrgScope, phone_number_id: uuid.UUID, contact: str, now: datetime
    ) -> None:
        """Close the contact's open challenge if its time is up (frees the open slot)."""
        await self.session.execute(
            update(Challenge)
            .where(
                *self._open_of(org, phone_number_id, contact),
                Challenge.expires_at <= now,
            )
            .values(state="expired", resolved_at=now)
        )

    async def add_open(self, row: dict[str, Any]) -> bool:
        """Insert an open challenge unless the contact has one: False then.

        The partial unique index decides, so concurrent requests cannot both win.
        """
        table = cast(Table, Challenge.__table__)
        inserted = await self.session.execute(
            insert_or_ignore(self.session, table).values(state=OPEN, **row).returning(table.c.id)
        )
        return inserted.first() is not None

    async def open_of(
        self, org: OrgScope, phone_number_id: uuid.UUID, contact: str, *, for_update: bool = False
    ) -> Challenge | None:
        statement = select(Challenge).where(*self._open_of(org, phone_number_id, contact))
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def resolve(
        self,
        org: OrgScope,
        challenge_id: uuid.UUID,
        state: str,
        at: datetime,
        *,
        inbound_message_id: uuid.UUID | None = None,
        consent_event_id: uuid.UUID | None = None,
    ) -> None:
        await self.session.execute(
            update(Challenge)
            .where(Challenge.org_id == org, Challenge.id == challenge_id, Challenge.state == OPEN)
            .values(
                state=state,
                resolved_at=at,
                inbound_message_id=inbound_message_id,
                consent_event_id=consent_event_id,
            )
        )

    async def cancel_open(
        self, org: OrgScope, phone_number_id: uuid.UUID, contact: str, at: datetime
    ) -> None:
        await self.session.execute(
            update(Challenge)
            .where(*self._open_of(org, phone_number_id, contact))
            .values(state="canceled", resolved_at=at)
        )

    @staticmethod
    def _open_of(org: OrgScope, phone_number_id: uuid.UUID, contact: str) -> list[Any]:
        return [
            Challenge.org_id == org,
            Challenge.phone_number_id == phone_number_id,
            Challenge.contact_number == contact,
            Challenge.state == OPEN,
        ]


class ProviderLookups:
    """Reads that find the organization a provider's request is about."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sender_numbers(self, number: str) -> list[PhoneNumber]:
        """Every organization's registration of ``number``, oldest first."""
        rows = await self.session.scalars(
            select(PhoneNumber)
            .where(PhoneNumber.number == number)
            .order_by(PhoneNumber.created_at, PhoneNumber.org_id)
        )
        return list(rows)

    async def message_org(self, provider: str, provider_message_id: str) -> uuid.UUID | None:
        """The organization of the message the provider calls ``provider_message_id``."""
        return await self.session.scalar(
            select(Message.org_id)
            .where(
                Message.provider_message_id == provider_message_id,
                Message.provider == provider,
            )
            .limit(1)
        )


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """An outbound message this dispatcher holds for one attempt."""

    org_id: uuid.UUID
    id: uuid.UUID
    purpose: str
    phone_number_id: uuid.UUID
    from_number: str
    to_number: str
    body: str
    attempt: int
    send_by: datetime | None = None


class OutboxRepository:
    """The dispatcher's rows: the queue of every organization, and the outcome of
    each attempt, fenced by the attempt number so that a late writer changes nothing."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(
        self, now: datetime, limit: int, lease_until: datetime, provider: str
    ) -> list[ClaimedMessage]:
        """Move up to ``limit`` due queued messages to ``sending``, with an attempt row each.

        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: concurrent dispatchers claim
        disjoint messages without waiting on each other. SQLite serialises writers.
        """
        due = (
            select(Message.org_id, Message.id)
            .where(
                Message.status == "queued",
                Message.next_attempt_at <= now,
            )
            .order_by(Message.next_attempt_at, Message.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = await self.session.execute(
            update(Message)
            .where(tuple_(Message.org_id, Message.id).in_(due))
            .values(
                status="sending",
                attempts=Message.attempts + 1,
                provider=provider,
                locked_until=lease_until,
                next_attempt_at=None,
                updated_at=now,
            )
            .returning(
                Message.org_id,
                Message.id,
                Message.purpose,
                Message.phone_number_id,
                Message.from_number,
                Message.to_number,
                Message.body,
                Message.attempts,
                Message.send_by,
            )
        )
        messages = [
            ClaimedMessage(
                org_id=row.org_id,
                id=row.id,
                purpose=row.purpose,
                phone_number_id=row.phone_number_id,
                from_number=row.from_number,
                to_number=row.to_number,
                body=row.body,
                attempt=row.attempts,
                send_by=row.send_by,
            )
            for row in claimed
        ]
        if messages:
            await self.session.execute(
                insert(cast(Table, MessageAttempt.__table__)),
                [
                    {
                        "org_id": m.org_id,
                        "id": new_id(),
                        "message_id": m.id,
                        "attempt": m.attempt,
                        "provider": provider,
                        "outcome": "sending",
                        "error_code": None,
                        "error_message": None,
                        "provider_message_id": None,
                        "started_at": now,
                        "finished_at": None,
                    }
                    for m in messages
                ],
            )
        return sorted(messages, key=lambda m: m.id)

    async def opted_out(self, messages: Sequence[ClaimedMessage]) -> set[uuid.UUID]:
        """Ids of the messages whose recipient is opted out of their sender number."""
        if not messages:
            return set()
        keys = {(m.org_id, m.phone_number_id, m.to_number) for m in messages}
        rows = await self.session.execute(
            select(
                ConsentRecord.org_id, ConsentRecord.phone_number_id, ConsentRecord.contact_number
            ).where(
                tuple_(
                    ConsentRecord.org_id,
                    ConsentRecord.phone_number_id,
                    ConsentRecord.contact_number,
                ).in_(list(keys)),
                ConsentRecord.opted_in.is_(False),
            )
        )
        out = {tuple(row) for row in rows}
        return {m.id for m in messages if (m.org_id, m.phone_number_id, m.to_number) in out}

    async def finish(
        self,
        message: ClaimedMessage,
        now: datetime,
        *,
        status: str,
        outcome: str,
        error_code: str | None = None,
        error_message: str | None = None,
        provider_message_id: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record how the claimed attempt ended. False (nothing written) if the
        claim is no longer ours (its lease ran out and the message was closed)."""
        values: dict[str, Any] = {
            "status": status,
            "error_code": error_code,
            "locked_until": None,
            "next_attempt_at": next_attempt_at,
            "updated_at": now,
        }
        if provider_message_id is not None:
            values["provider_message_id"] = provider_message_id
        result: Any = await self.session.execute(
            update(Message)
            .where(
                Message.org_id == message.org_id,
                Message.id == message.id,
                Message.status == "sending",
                Message.attempts == message.attempt,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            return False
        await self._finish_attempt(
            message.org_id,
            message.id,
            message.attempt,
            now,
            outcome=outcome,
            error_code=error_code,
            error_message=error_message,
            provider_message_id=provider_message_id,
        )
        return True

    async def close_abandoned(self, now: datetime) -> int:
        """Fail messages whose sender died mid-attempt (lease over): whether the
        provider took them is unknown, and sending again could deliver twice."""
        abandoned = (
            await self.session.execute(
                update(Message)
                .where(Message.status == "sending", Message.locked_until < now)
                .values(
                    status="failed",
                    error_code="outcome_unknown",
                    locked_until=None,
                    updated_at=now,
                )
                .returning(Message.org_id, Message.id, Message.attempts)
            )
        ).all()
        for org_id, message_id, attempt in abandoned:
            await self._finish_attempt(
                org_id, message_id, attempt, now, outcome="unknown", error_code="outcome_unknown"
            )
        return len(abandoned)

    async def _finish_attempt(
        self,
        org_id: uuid.UUID,
        message_id: uuid.UUID,
        attempt: int,
        now: datetime,
        *,
        outcome: str,
        error_code: str | None = None,
        error_message: str | None = None,
        provider_message_id: str | None = None,
    ) -> None:
        await self.session.execute(
            update(MessageAttempt)
            .where(
                MessageAttempt.org_id == org_id,
                MessageAttempt.message_id == message_id,
                MessageAttempt.attempt == attempt,
            )
            .values(
                outcome=outcome,
                error_code=error_code,
                error_message=error_message,
                provider_message_id=provider_message_id,
                finished_at=now,
            )
        )

    async def queued_count(self) -> int:
        """Messages waiting to be sent (due or not), for the worker's report."""
        return int(
            await self.session.scalar(
                select(func.count()).select_from(Message).where(Message.status == "queued")
            )
            or 0
        )
