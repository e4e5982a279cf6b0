"""The revocation compliance report: every revocation in a period, how fast it
was honored and confirmed, and every breach of the FCC's clocks.

A revocation is an opt-out event read from the contact's words (a keyword, a
phrase, a reviewed reply) or recorded from another channel. Honored: when the
event was recorded. Breaches: honored after ``honor_by`` (10 US business days),
or an SMS confirmation sent more than 5 minutes after the revocation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.repository import EVENT_OF_RECORD
from agentmessage.db.models import ConsentEvent, ConsentRecord, Message, MessageAttempt
from agentmessage.kit.errors import ValidationFailed
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.revocations.clock import CONFIRMATION_WINDOW, honor_by

MAX_ROWS = 10_000
_SMS_REASONS = ("keyword:", "phrase:", "review:")


def _channel(reason: str) -> str | None:
    if reason.startswith("revocation:"):
        return reason.removeprefix("revocation:")
    if reason.startswith(_SMS_REASONS):
        return "sms"
    return None


async def revocations(
    session: AsyncSession, org: OrgScope, start: datetime, end: datetime
) -> dict[str, Any]:
    if end <= start:
        raise ValidationFailed(details={"to": "must be after from"})
    statement = (
        select(
            ConsentEvent.id,
            ConsentEvent.consent_id,
            ConsentEvent.reason,
            ConsentEvent.occurred_at,
            ConsentEvent.created_at,
            ConsentRecord.phone_number_id,
            ConsentRecord.contact_number,
        )
        .join(ConsentRecord, EVENT_OF_RECORD)
        .where(
            ConsentEvent.org_id == org,
            ConsentEvent.type == "opt_out",
            ConsentEvent.occurred_at >= start,
            ConsentEvent.occurred_at < end,
            or_(*(ConsentEvent.reason.startswith(p) for p in (*_SMS_REASONS, "revocation:"))),
        )
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
        .limit(MAX_ROWS + 1)
    )
    events = (await session.execute(statement)).all()
    truncated = len(events) > MAX_ROWS
    events = events[:MAX_ROWS]
    confirmations = await _confirmations(session, org, events)
    rows = []
    breaches: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    for event in events:
        channel = _channel(event.reason) or "other"
        deadline = honor_by(event.occurred_at)
        honored_late = event.created_at.date() > deadline
        confirmation = confirmations.get(event.id) if channel == "sms" else None
        confirmation_late = False
        if confirmation is not None:
            sent_at = confirmation["sent_at"]
            confirmation_late = confirmation["status"] == "skipped_late" or (
                sent_at is not None and sent_at - event.occurred_at > CONFIRMATION_WINDOW
            )
            confirmation = {
                **confirmation,
                "sent_at": format_rfc3339(sent_at) if sent_at else None,
            }
        channels[channel] += 1
        breaches["honored_late"] += honored_late
        breaches["confirmation_late"] += confirmation_late
        rows.append(
            {
                "event_id": str(event.id),
                "consent_id": str(event.consent_id),
                "phone_number_id": str(event.phone_number_id),
                "contact_number": event.contact_number,
                "channel": channel,
                "reason": event.reason,
                "received_at": format_rfc3339(event.occurred_at),
                "honored_at": format_rfc3339(event.created_at),
                "honor_by": deadline.isoformat(),
                "delay_seconds": round((event.created_at - event.occurred_at).total_seconds(), 3),
                "confirmation": confirmation,
                "breaches": [
                    name
                    for name, hit in (
                        ("honored_late", honored_late),
                        ("confirmation_late", confirmation_late),
                    )
                    if hit
                ],
            }
        )
    return {
        "from": format_rfc3339(start),
        "to": format_rfc3339(end),
        "data": rows,
        "summary": {
            "revocations": len(rows),
            "by_channel": dict(sorted(channels.items())),
            "breaches": {
                "honored_late": breaches["honored_late"],
                "confirmation_late": breaches["confirmation_late"],
            },
            "truncated": truncated,
        },
    }


async def _confirmations(
    session: AsyncSession, org: OrgScope, events: Sequence[Any]
) -> dict[Any, dict[str, Any]]:
    """The opt-out confirmation queued with each SMS revocation (same number and
    contact, queued when it was honored), and when its first attempt was sent."""
    sms = [e for e in events if _channel(e.reason) == "sms"]
    if not sms:
        return {}
    contacts = {e.contact_number for e in sms}
    statement = (
        select(Message.id, Message.phone_number_id, Message.to_number, Message.status,
               Message.created_at, MessageAttempt.finished_at, MessageAttempt.outcome)
        .outerjoin(
            MessageAttempt,
            and_(
                MessageAttempt.org_id == Message.org_id,
                MessageAttempt.message_id == Message.id,
                MessageAttempt.outcome == "sent",
            ),
        )
        .where(
            Message.org_id == org,
            Message.purpose == "opt_out_confirmation",
            Message.to_number.in_(contacts),
        )
        .order_by(Message.created_at)
    )  # fmt: skip
    by_contact: dict[tuple[Any, str], list[Any]] = defaultdict(list)
    for m in (await session.execute(statement)).all():
        by_contact[(m.phone_number_id, m.to_number)].append(m)  # oldest first
    found: dict[Any, dict[str, Any]] = {}
    for event in sms:
        for m in by_contact.get((event.phone_number_id, event.contact_number), ()):
            if abs(m.created_at - event.created_at) <= CONFIRMATION_WINDOW:
                found[event.id] = {
                    "message_id": str(m.id),
                    "status": m.status,
                    "sent_at": m.finished_at,
                }
                break
    return found
