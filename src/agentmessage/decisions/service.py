"""Send decisions: the answer for each contact, from the records (now) or from
history (``at``), stored with the question in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, exists, false, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from agentmessage.auth.service import Caller, KeyOrg, OrgScope
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
class State:
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
    valid = valid_contacts(body.contact_numbers)
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
    decision = decide(caller, body, valid, states, pending, now)
    # A Core INSERT: the ORM's unit of work cost more than the statement here.
    await session.execute(INSERT_DECISION, decision)
    return decision_json(decision)


def valid_contacts(contacts: Sequence[str]) -> list[str]:
    """The E.164 ones, each once, sorted (the order the reads take them in)."""
    return sorted({c for c in contacts if e164_problem(c) is None})


def decide(
    caller: Caller,
    body: CheckRequest,
    valid: Sequence[str],
    states: Mapping[str, State],
    pending: Set[str],
    now: datetime,
) -> dict[str, Any]:
    """The decision's row: an answer per contact asked, in the order asked."""
    valid_set = set(valid)
    results = [
        _answer(c, c in valid_set, states.get(c), c in pending) for c in body.contact_numbers
    ]
    return {
        "org_id": caller.org_id,
        "id": new_id(),
        "phone_number_id": body.phone_number_id,
        "at": body.at,
        "contacts": len(results),
        "results": results,
        "actor": caller.actor,
        "created_at": now,
    }


INSERT_DECISION = insert(cast(Table, ConsentDecision.__table__))
_SHOWN = ("id", "created_at", "phone_number_id", "at", "results")


def decision_json(decision: dict[str, Any]) -> dict[str, Any]:
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
    return decision_json(
        {
            name: getattr(decision, name)
            for name in ("id", "created_at", "phone_number_id", "at", "results")
        }
    )


def _answer(contact: str, valid: bool, state: State | None, pending: bool) -> dict[str, Any]:
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


def _result(contact: str, allowed: bool, reason: str, state: State | None) -> dict[str, Any]:
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


def record_columns() -> tuple[Any, ...]:
    """A contact's record as ``State`` takes it: id, contact, opted_in, opted_in_at,
    opted_out_at, method, and whether its opt-out is a carrier deactivation."""
    deactivation = exists().where(
        ConsentEvent.org_id == ConsentRecord.org_id,
        ConsentEvent.consent_id == ConsentRecord.id,
        ConsentEvent.type == "opt_out",
        ConsentEvent.reason == DEACTIVATED,
        ConsentEvent.occurred_at == ConsentRecord.opted_out_at,
    )
    return (
        ConsentRecord.id,
        ConsentRecord.contact_number,
        ConsentRecord.opted_in,
        ConsentRecord.opted_in_at,
        ConsentRecord.opted_out_at,
        ConsentRecord.consent_method,
        # Looked for only behind an opt-out: an opted-in record answers opted_in.
        case((ConsentRecord.opted_in, false()), else_=deactivation).label("deactivated"),
    )


def record_criteria(
    org: OrgScope | KeyOrg, phone: Any, contacts: ColumnElement[bool]
) -> tuple[ColumnElement[bool], ...]:
    """The records of ``contacts`` (a condition on the contact number) for one
    sender number. ``org`` is the authenticated organization, or the one of the
    key the same statement looks up (the fast check's read)."""
    return (
        ConsentRecord.org_id == org,
        ConsentRecord.phone_number_id == phone,
        contacts,
    )


def pending_criteria(
    org: OrgScope | KeyOrg, phone: Any, contacts: ColumnElement[bool], at: Any
) -> tuple[ColumnElement[bool], ...]:
    """Double opt-in challenges of ``contacts`` awaiting their reply at ``at``."""
    return (
        Challenge.org_id == org,
        Challenge.phone_number_id == phone,
        contacts,
        Challenge.created_at <= at,
        Challenge.expires_at > at,
        or_(
            and_(Challenge.state == OPEN, Challenge.resolved_at.is_(None)),
            Challenge.resolved_at > at,
        ),
    )


def state_of(row: Sequence[Any]) -> State:
    """A ``State`` from a row of ``record_columns``."""
    consent_id, _, opted_in, opted_in_at, opted_out_at, method, deactivated = row
    return State(consent_id, opted_in, opted_in_at, opted_out_at, method, bool(deactivated))


async def _now(
    session: AsyncSession, org: OrgScope, phone: uuid.UUID, contacts: Sequence[str]
) -> dict[str, State]:
    """Current state, from the records: one indexed read."""
    statement = select(*record_columns()).where(
        *record_criteria(
            org, phone, one_of(session, ConsentRecord.contact_number, contacts, String())
        )
    )
    return {row[1]: state_of(row) for row in await session.execute(statement)}


async def _as_of(
    session: AsyncSession, org: OrgScope, phone: uuid.UUID, contacts: Sequence[str], at: datetime
) -> dict[str, State]:
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
    states: dict[str, State] = {}
    for row in await session.execute(statement):
        state = states.get(row.contact_number)
        if state is None:
            state = states[row.contact_number] = State(row.consent_id, False, None, None, None)
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
    contact = one_of(session, Challenge.contact_number, contacts, String())
    statement = select(Challenge.contact_number).where(*pending_criteria(org, phone, contact, at))
    return set((await session.scalars(statement)).all())
