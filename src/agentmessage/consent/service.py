"""Consent rules: capture, revoke, read, list. Services flush; the route commits."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller, OrgScope
from agentmessage.consent.capture import capture_records, change_of, ensure_plan_allows
from agentmessage.consent.changes import BatchResult, ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository, ConsentState, ListFilters, Position
from agentmessage.consent.schemas import ConsentCapture
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.kit.clock import utcnow
from agentmessage.kit.cursor import InvalidCursor, decode_cursor, encode_cursor
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.timefmt import format_rfc3339, parse_rfc3339


@dataclass(frozen=True, slots=True)
class CaptureResult:
    record: ConsentState
    created: bool


@dataclass(frozen=True, slots=True)
class Page:
    records: Sequence[ConsentRecord]
    total: int
    offset: int
    limit: int
    next_cursor: str | None


async def capture(session: AsyncSession, caller: Caller, capture: ConsentCapture) -> CaptureResult:
    """Record an attested opt-in or opt-out, with its evidence, as a history event.

    Creates the record or updates it (``created`` says which); every call appends
    one event. Raises PlanRequired, NotFound (phone number not in the caller's
    organization) and ValidationFailed (an opt-in older than the contact's opt-out).
    """
    ensure_plan_allows(caller, [capture])
    result = await record_changes(session, caller.org_id, [(0, change_of(capture, caller.actor))])
    for rejection in result.rejected:
        if rejection.code == "NOT_FOUND":
            raise NotFound("phone number not found")
        raise ValidationFailed(details=rejection.details)
    (accepted,) = result.accepted
    return CaptureResult(record=accepted.record, created=accepted.created)


async def capture_bulk(session: AsyncSession, caller: Caller, records: list[Any]) -> BatchResult:
    """Capture up to 1000 raw records, each validated and judged on its own.

    Raises PlanRequired when any record asks for an opt-in on a plan without
    attested capture; every other problem is a per-record rejection.
    """
    return await capture_records(session, caller, records)


async def revoke(session: AsyncSession, caller: Caller, consent_id: uuid.UUID) -> ConsentState:
    """Opt the contact out. Idempotent: an opted-out record is returned unchanged and
    no second event is written. NotFound for an unknown id or another organization's."""
    record = await ConsentRepository(session).get(caller.org_id, consent_id, for_update=True)
    if record is None:
        raise NotFound()
    state = ConsentState.of(record)
    if not record.opted_in:
        return state
    change = ConsentChange(
        phone_number_id=record.phone_number_id,
        contact_number=record.contact_number,
        opted_in=False,
        occurred_at=utcnow(),
        consent_method=None,
        source="api",
        reason="api:delete",
        evidence=None,
        actor=caller.actor,
        # Now, as this service sees it: never refused, even after an opt-in whose
        # captured_at ran up to 5 minutes ahead of our clock.
        refuse_stale=False,
    )
    result = await record_changes(session, caller.org_id, [(0, change)])
    return result.accepted[0].record


async def get(session: AsyncSession, org: OrgScope, consent_id: uuid.UUID) -> ConsentRecord:
    record = await ConsentRepository(session).get(org, consent_id)
    if record is None:
        raise NotFound()
    return record


async def history(
    session: AsyncSession, org: OrgScope, consent_id: uuid.UUID
) -> Sequence[ConsentEvent]:
    """Every event of the record, oldest first. NotFound as ``get``."""
    await get(session, org, consent_id)
    return await ConsentRepository(session).events(org, consent_id)


async def list_page(
    session: AsyncSession,
    org: OrgScope,
    filters: ListFilters,
    *,
    limit: int,
    cursor: str | None,
    secret: bytes,
) -> Page:
    """One page in (updated_at DESC, id DESC) order. ValidationFailed for a cursor
    that was altered, or minted for another organization or other filters.

    ``offset`` travels in the signed cursor (records the walk has passed), so a deep
    page costs what the first does; ``total`` is counted exactly on every page.
    """
    fingerprint = _fingerprint(org, filters)
    after, offset = _read_cursor(cursor, fingerprint, secret) if cursor else (None, 0)
    repo = ConsentRepository(session)
    rows = await repo.page(org, filters, after, limit + 1)
    total = await repo.count(org, filters)
    records = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = records[-1]
        payload = {
            "u": format_rfc3339(last.updated_at),
            "i": last.id.hex,
            "o": offset + len(records),
            "f": fingerprint,
        }
        next_cursor = encode_cursor(payload, secret)
    return Page(records, total=total, offset=offset, limit=limit, next_cursor=next_cursor)


def _fingerprint(org: OrgScope, filters: ListFilters) -> str:
    parts: list[Any] = [
        org.hex,
        filters.contact_number,
        filters.phone_number_id.hex if filters.phone_number_id else None,
        filters.opted_in,
        format_rfc3339(filters.since) if filters.since else None,
        filters.consent_method,
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _read_cursor(cursor: str, fingerprint: str, secret: bytes) -> tuple[Position, int]:
    try:
        payload = decode_cursor(cursor, secret)
        if payload.get("f") != fingerprint:
            raise ValidationFailed(
                details={"cursor": "belongs to a different query; keep the same filters"}
            )
        position = Position(updated_at=parse_rfc3339(payload["u"]), id=uuid.UUID(hex=payload["i"]))
        offset = payload["o"]
        if not isinstance(offset, int) or offset < 0:
            raise TypeError("offset")
        return position, offset
    except (InvalidCursor, KeyError, ValueError, TypeError):
        raise ValidationFailed(details={"cursor": "is not a valid cursor"}) from None
