"""Send decisions: the answer for each contact, from the records (now) or from
history (``at``), stored with the question in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from agentmessage.auth.service import Caller, OrgScope
from agentmessage.consent.repository import EVENT_OF_RECORD
from agentmessage.db.bulk import one_of
from agentmessage.db.models import (
    OPEN,
    Challenge,
    ConsentDecision,
    ConsentEvent,
    ConsentRecord,
    PhoneNumber,
)
from agentmessage.decisions.schemas import CheckRequest
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound
from agentmessage.kit.ids import new_id
from agentmessage.kit.phone import e164_problem
from agentmessage.kit.timefmt import format_rfc3339

DEACTIVATED = "number_deactivated"


@dataclass(slots=True)
class _State:
    """One contact's consent, now or as of a moment."""

    consent_id: uuid.UUID
    opted_in: bool
    opted_in_at: datetime | None
    opted_out_at: datetime | None
    consent_method: str | None
    deactivated: bool = False


async def check(session: AsyncSession, caller: Caller, body: CheckRequest) -> dict[str, Any]:
    org = caller.org_id
    if await session.get(PhoneNumber, (org, body.phone_number_id)) is None:
        raise NotFound("phone number not found")
    now = utcnow()
    valid_set = {c for c in body.contact_numbers if e164_problem(c) is None}
    valid = sorted(valid_set)
    at = body.at
    if valid:
        states = (
            await _now(session, org, body.phone_number_id, valid)
            if at is None
            else await _as_of(session, org, body.phone_number_id, valid, at)
        )
        undecided = [c for c in valid if c not in states or not states[c].opted_in]
        pending = await _pending(session, org, body.phone_number_id, undecided, at or now)
    else:
        states, pending = {}, set()
    results = [
        _answer(c, c in valid_set, states.get(c), c in pending) for c in body.contact_numbers
    ]
    decision = {
        "org_id": org,
        "id": new_id(),
        "phone_number_id": body.phone_number_id,
        "at": at,
        "contacts": len(results),
        "results": results,
        "actor": caller.actor,
        "created_at": now,
    }
    # A Core INSERT: the ORM's unit of work cost more than the statement here.
    await session.execute(_INSERT_DECISION, decision)
    return _decision_json(decision)


_INSERT_DECISION = insert(cast(Table, ConsentDecision.__table__))
_SHOWN = ("id", "created_at", "phone_number_id", "at", "results")


def _decision_json(decision: dict[str, Any]) -> dict[str, Any]:
    """The stored decision (its row's values) as the API answers it."""
    return {
        "decision_id": str(decision["id"]),
        "checked_at": format_rfc3339(decision["created_at"]),
        "phone_number_id": str(decision["phone_number_id"]),
        "at": format_rfc3339(decision["at"]) if decision["at"] else None,
        "results": decision["results"],
    }


async def get_decision(
    session: AsyncSession, org: OrgScope, decision_id: uuid.UUID
) -> dict[str, Any]:
    decision = await session.get(ConsentDecision, (org, decision_id))
    if decision is None:
        raise NotFound("decision not found")
    return _decision_json(
        {
            name: getattr(decision, name)
            for name in ("id", "created_at", "phone_number_id", "at", "results")
        }
    )


def _answer(contact: str, valid: bool, state: _State | None, pending: bool) -> dict[str, Any]:
    if not valid:
        return _result(contact, False, "invalid_number", None)
    if state is not None and state.opted_in:
        return _result(contact, True, "opted_in", state)
    if state is not None and state.deactivated:
        return _result(contact, False, DEACTIVATED, state)
    if pending:
        return _result(contact, False, "pending_confirmation", state)
    if state is not None:
        return _result(contact, False, "opted_out", state)
    return _result(contact, False, "no_consent", None)


def _result(contact: str, allowed: bool, reason: str, state: _State | None) -> dict[str, Any]:
    return {
        "contact_number": contact,
        "allowed": allowed,
        "reason": reason,
        "consent_id": str(state.consent_id) if state else None,
        "opted_in_at": _time(state.opted_in_at) if state else None,
        "opted_out_at": _time(state.opted_out_at) if state else None,
        "consent_method": state.consent_method if state else None,
    }


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value else None


async def _now(
    session: AsyncSession, org: OrgScope, phone: uuid.UUID, contacts: Sequence[str]
) -> dict[str, _State]:
    """Current state, from the records: one indexed read (plus one for opt-outs)."""
    statement = select(
        ConsentRecord.id,
        ConsentRecord.contact_number,
        ConsentRecord.opted_in,
        ConsentRecord.opted_in_at,
        ConsentRecord.opted_out_at,
        ConsentRecord.consent_method,
    ).where(
        ConsentRecord.org_id == org,
        ConsentRecord.phone_number_id == phone,
        one_of(session, ConsentRecord.contact_number, contacts, String()),
    )
    states = {
        row.contact_number: _State(
            row.id, row.opted_in, row.opted_in_at, row.opted_out_at, row.consent_method
        )
        for row in await session.execute(statement)
    }
    out = {s.consent_id: s for s in states.values() if not s.opted_in and s.opted_out_at}
    if out:
        # An opt-out that is a carrier deactivation answers number_deactivated.
        deactivations = select(ConsentEvent.consent_id, ConsentEvent.occurred_at).where(
            ConsentEvent.org_id == org,
            ConsentEvent.consent_id.in_(list(out)),
            ConsentEvent.type == "opt_out",
            ConsentEvent.reason == DEACTIVATED,
        )
        for row in await session.execute(deactivations):
            state = out[row.consent_id]
            if state.opted_out_at == row.occurred_at:
                state.deactivated = True
    return states


async def _as_of(
    session: AsyncSession, org: OrgScope, phone: uuid.UUID, contacts: Sequence[str], at: datetime
) -> dict[str, _State]:
    """State as of ``at``: each contact's events that had taken effect by then,
    folded in the order they took effect."""
    statement = (
        select(
            ConsentRecord.contact_number,
            ConsentEvent.consent_id,
            ConsentEvent.type,
            ConsentEvent.consent_method,
            ConsentEvent.reason,
            ConsentEvent.occurred_at,
        )
        .join(ConsentEvent, EVENT_OF_RECORD)
        .where(
            ConsentRecord.org_id == org,
            ConsentRecord.phone_number_id == phone,
            one_of(session, ConsentRecord.contact_number, contacts, String()),
            ConsentEvent.occurred_at <= at,
        )
        .order_by(ConsentEvent.occurred_at, ConsentEvent.created_at, ConsentEvent.id)
    )
    states: dict[str, _State] = {}
    for row in await session.execute(statement):
        state = states.get(row.contact_number)
        if state is None:
            state = states[row.contact_number] = _State(row.consent_id, False, None, None, None)
        if row.type == "opt_in":
            state.opted_in, state.opted_in_at, state.opted_out_at = True, row.occurred_at, None
            state.deactivated = False
        else:
            state.opted_in, state.opted_out_at = False, row.occurred_at
            state.deactivated = row.reason == DEACTIVATED
        state.consent_method = row.consent_method or state.consent_method
    return states


async def _pending(
    session: AsyncSession, org: OrgScope, phone: uuid.UUID, contacts: Sequence[str], at: datetime
) -> set[str]:
    """Contacts with a double opt-in challenge awaiting their reply at ``at``."""
    if not contacts:
        return set()
    statement = select(Challenge.contact_number).where(
        Challenge.org_id == org,
        Challenge.phone_number_id == phone,
        one_of(session, Challenge.contact_number, contacts, String()),
        Challenge.created_at <= at,
        Challenge.expires_at > at,
        or_(
            and_(Challenge.state == OPEN, Challenge.resolved_at.is_(None)),
            Challenge.resolved_at > at,
        ),
    )
    return set((await session.scalars(statement)).all())
