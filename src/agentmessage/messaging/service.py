"""Messages: the outbox (enqueue), reads, and delivery reports. Services flush;
the route (or the dispatcher) commits."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.db.models import Message, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound
from agentmessage.kit.ids import new_id
from agentmessage.kit.phone import masked
from agentmessage.messaging.repository import MessageRepository, ProviderLookups
from agentmessage.messaging.schemas import MAX_BODY

log = logging.getLogger(__name__)

Purpose = Literal["double_opt_in", "opt_out_confirmation", "opt_in_confirmation", "help"]

OPT_OUT_CONFIRMATION: Final = "opt_out_confirmation"
"""The one message an opted-out contact may still get (SPEC.md: one confirmation)."""

# Progress of an outbound message: a report never moves it backwards.
_RANK: Final = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": 3}


async def enqueue(
    session: AsyncSession,
    org: OrgScope,
    sender: PhoneNumber,
    to: str,
    body: str,
    purpose: Purpose,
    *,
    message_id: uuid.UUID | None = None,
    send_by: datetime | None = None,
) -> Message | None:
    """Queue one SMS from ``sender`` in the request's transaction; the dispatcher
    sends it after commit. None (nothing queued) when the contact is opted out
    of ``sender``, unless this is the opt-out confirmation itself."""
    if not 1 <= len(body) <= MAX_BODY:
        raise ValueError(f"an SMS body has 1..{MAX_BODY} characters")
    repo = MessageRepository(session)
    if purpose != OPT_OUT_CONFIRMATION and await repo.is_opted_out(org, sender.id, to):
        log.info("not queued (%s): %s opted out", purpose, masked(to))
        return None
    now = utcnow()
    message = Message(
        org_id=org,
        id=message_id or new_id(),
        direction="outbound",
        purpose=purpose,
        phone_number_id=sender.id,
        from_number=sender.number,
        to_number=to,
        body=body,
        status="queued",
        error_code=None,
        provider=None,
        provider_message_id=None,
        attempts=0,
        next_attempt_at=now,
        locked_until=None,
        send_by=send_by,
        created_at=now,
        updated_at=now,
    )
    await repo.add(message)
    return message


async def get_message(session: AsyncSession, org: OrgScope, message_id: uuid.UUID) -> Message:
    """NotFound for an unknown id or another organization's."""
    message = await MessageRepository(session).get(org, message_id)
    if message is None:
        raise NotFound()
    return message


async def apply_delivery_report(
    session: AsyncSession,
    provider: str,
    provider_message_id: str,
    provider_status: str,
    error_code: str | None,
) -> bool:
    """Apply a provider's status report (Twilio's MessageStatus) to its message.

    Only forward: a late ``sent`` never undoes ``delivered``. False when the
    message is unknown (not ours, or its send is not recorded yet) or the report
    changes nothing.
    """
    status = _STATUS_OF.get(provider_status)
    if status is None:
        return False
    org_id = await ProviderLookups(session).message_org(provider, provider_message_id)
    if org_id is None:
        return False
    # The provider's signature vouched for the report; its message names the org.
    org = OrgScope(org_id)
    repo = MessageRepository(session)
    message = await repo.by_provider_id(org, provider, provider_message_id)
    if message is None or message.direction != "outbound":
        return False
    if _RANK.get(status, 0) <= _RANK.get(message.status, 0):
        return False
    await repo.set_status(
        org, message.id, status, error_code if status == "failed" else None, utcnow()
    )
    return True


# Twilio's message statuses -> ours. queued/accepted/sending/scheduled say nothing new.
_STATUS_OF: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}
