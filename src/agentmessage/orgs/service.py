"""Creating organizations and sender numbers (the CLI and the demo use these)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.db.models import Organization, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.phone import e164_problem
from agentmessage.kit.text import is_blank
from agentmessage.orgs import confirmation
from agentmessage.orgs.plans import PLANS


async def create_organization(
    session: AsyncSession,
    *,
    name: str,
    plan: str = "payg",
    rate_limit_per_minute: int | None = None,
    help_text: str | None = None,
    opt_out_confirmation: str | None = None,
) -> Organization:
    """Validates every field before writing; raises ValidationFailed naming the field.

    ``help_text``: the SMS answering HELP/INFO (None: a default naming the organization).
    """
    details: dict[str, str] = {}
    if is_blank(name) or len(name) > 200:
        details["name"] = "must be 1..200 characters"
    if plan not in PLANS:
        details["plan"] = f"must be one of {', '.join(PLANS)}"
    if rate_limit_per_minute is not None and not 1 <= rate_limit_per_minute <= 10_000_000:
        details["rate_limit"] = "must be between 1 and 10000000 requests per minute"
    if help_text is not None and (is_blank(help_text) or len(help_text.strip()) > 1600):
        details["help_text"] = "must be 1..1600 characters (one SMS)"
    if opt_out_confirmation is not None:
        why = confirmation.problem(opt_out_confirmation)
        if why:
            details["opt_out_confirmation"] = why
    if details:
        raise ValidationFailed(details=details)
    org = Organization(
        name=name.strip(),
        plan=plan,
        rate_limit_per_minute=rate_limit_per_minute,
        help_text=help_text.strip() if help_text is not None else None,
        opt_out_confirmation=opt_out_confirmation.strip() if opt_out_confirmation else None,
        created_at=utcnow(),
    )
    session.add(org)
    await session.flush()
    return org


async def set_opt_out_confirmation(
    session: AsyncSession, org_id: uuid.UUID, text: str | None
) -> Organization:
    """Set (or, with None, reset to the default) the fixed opt-out confirmation."""
    org = await get_organization(session, org_id)
    if text is not None:
        why = confirmation.problem(text)
        if why:
            raise ValidationFailed(details={"opt_out_confirmation": why})
    org.opt_out_confirmation = text.strip() if text is not None else None
    await session.flush()
    return org


async def get_organization(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    return org


async def create_phone_number(
    session: AsyncSession, *, org_id: uuid.UUID, number: str
) -> PhoneNumber:
    """A sender number. A number belongs to one organization: one already
    registered, here or in another organization, raises ValidationFailed."""
    await get_organization(session, org_id)
    problem = e164_problem(number)
    if problem:
        raise ValidationFailed(details={"number": problem})
    owner = await session.scalar(select(PhoneNumber.org_id).where(PhoneNumber.number == number))
    if owner is not None:
        raise ValidationFailed(details={"number": _taken(owner == org_id)})
    phone = PhoneNumber(org_id=org_id, number=number, created_at=utcnow())
    try:
        async with session.begin_nested():
            session.add(phone)
    except IntegrityError:
        # Registered by a concurrent command since we looked: the unique index held.
        raise ValidationFailed(details={"number": _taken(False)}) from None
    return phone


def _taken(by_this_organization: bool) -> str:
    whose = "this organization" if by_this_organization else "another organization"
    return f"is already a sender number of {whose}; a number belongs to one organization"
