"""Reads and writes of hosted-form rows. Every method takes an ``OrgScope``."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.models import HostedForm, Organization, PhoneNumber


class HostedFormRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def phone_number(self, org: OrgScope, phone_number_id: uuid.UUID) -> PhoneNumber | None:
        return await self.session.get(PhoneNumber, (org, phone_number_id))

    async def organization_name(self, org: OrgScope) -> str | None:
        return await self.session.scalar(select(Organization.name).where(Organization.id == org))

    async def add(self, form: HostedForm) -> None:
        self.session.add(form)
        await self.session.flush()

    async def get(self, org: OrgScope, form_id: uuid.UUID) -> HostedForm | None:
        return await self.session.scalar(
            select(HostedForm).where(HostedForm.org_id == org, HostedForm.id == form_id)
        )

    async def claim_submission(self, org: OrgScope, form_id: uuid.UUID, at: datetime) -> bool:
        """Mark the form submitted unless it already is: True for exactly one caller.

        One conditional UPDATE: on PostgreSQL a concurrent claim waits for the row
        lock and then sees ``submitted_at`` set; SQLite serialises writers.
        """
        result = await self.session.execute(
            update(HostedForm)
            .where(
                HostedForm.org_id == org,
                HostedForm.id == form_id,
                HostedForm.submitted_at.is_(None),
            )
            .values(submitted_at=at)
            .returning(HostedForm.id)
        )
        return result.first() is not None

    async def submitted_at(self, org: OrgScope, form_id: uuid.UUID) -> datetime | None:
        """Read afresh (not from the session): another request may have just set it."""
        return await self.session.scalar(
            select(HostedForm.submitted_at).where(
                HostedForm.org_id == org, HostedForm.id == form_id
            )
        )

    async def link_event(self, org: OrgScope, form_id: uuid.UUID, event_id: uuid.UUID) -> None:
        await self.session.execute(
            update(HostedForm)
            .where(HostedForm.org_id == org, HostedForm.id == form_id)
            .values(consent_event_id=event_id)
        )
