"""Double opt-in (seed 002): a YES/CONFIRM challenge SMS, and its confirmation.

Exactly one SMS per open challenge, even under concurrent requests: a partial
unique index allows one open challenge per contact and sender number, the
challenge is inserted-or-ignored against it, and its SMS is queued in the same
transaction only by the request whose insert won.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller, OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository, ContactKey
from agentmessage.db.models import Message, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import Internal, NotFound, ValidationFailed
from agentmessage.kit.ids import new_id
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.messaging import service
from agentmessage.messaging.repository import ChallengeRepository
from agentmessage.messaging.schemas import DoubleOptInRequest

CHALLENGE_LIFETIME: Final = timedelta(hours=24)
OPTED_OUT_MESSAGE: Final = (
    "the contact has opted out of this number and gets no challenge SMS; to opt back "
    "in they must reply START to this number or use the hosted form "
    "(POST /v1/consent/hosted)"
)
# A challenge resolved between our insert and our read: try again, a few times.
_ATTEMPTS: Final = 3


def default_confirmation_text(program: str) -> str:
    """CTIA's elements: program name, how to confirm, frequency, rates, HELP, STOP."""
    return (
        f"{program}: reply YES to confirm you want text messages from {program}. "
        "Msg frequency varies. Msg & data rates may apply. Reply HELP for help, STOP to opt out."
    )


@dataclass(frozen=True, slots=True)
class ChallengeOutcome:
    challenge_id: uuid.UUID | None
    message_id: uuid.UUID | None
    expires_at: datetime | None
    reused: bool = False
    already_opted_in: bool = False

    @property
    def created(self) -> bool:
        return self.challenge_id is not None and not self.reused


async def start(
    session: AsyncSession, caller: Caller, request: DoubleOptInRequest
) -> ChallengeOutcome:
    """Open a challenge and queue its SMS, unless one is open (``reused``: its ids,
    no second SMS) or the contact is opted in (``already_opted_in``, no SMS).

    NotFound for a sender number outside the caller's organization;
    ValidationFailed when the contact opted out (a challenge SMS would be
    the very message they asked not to get).
    """
    org = caller.org_id
    consent = ConsentRepository(session)
    sender = await consent.phone_number(org, request.phone_number_id)
    if sender is None:
        raise NotFound("phone number not found")
    key = ContactKey(sender.id, request.contact_number)
    state = (await consent.lock_states(org, [key])).get(key)
    if state is not None and state.opted_in:
        return ChallengeOutcome(None, None, None, already_opted_in=True)
    if state is not None:
        raise ValidationFailed(details={"contact_number": OPTED_OUT_MESSAGE})

    challenges = ChallengeRepository(session)
    text = request.confirmation_text or default_confirmation_text(caller.org_name)
    for _ in range(_ATTEMPTS):
        now = utcnow()
        await challenges.expire_overdue(org, sender.id, request.contact_number, now)
        challenge_id, message_id = new_id(), new_id()
        expires_at = now + CHALLENGE_LIFETIME
        won = await challenges.add_open(
            {
                "org_id": org,
                "id": challenge_id,
                "phone_number_id": sender.id,
                "contact_number": request.contact_number,
                "agreement_text": request.agreement_text,
                "confirmation_text": text,
                "message_id": message_id,
                "api_key_id": caller.key_id,
                "created_at": now,
                "expires_at": expires_at,
            }
        )
        if won:
            queued = await service.enqueue(
                session,
                org,
                sender,
                request.contact_number,
                text,
                "double_opt_in",
                message_id=message_id,
            )
            assert queued is not None  # the contact is not opted out (checked above)
            return ChallengeOutcome(challenge_id, message_id, expires_at)
        existing = await challenges.open_of(org, sender.id, request.contact_number)
        if existing is not None:
            return ChallengeOutcome(
                existing.id, existing.message_id, existing.expires_at, reused=True
            )
    raise Internal("could not open a challenge; retry")


@dataclass(frozen=True, slots=True)
class Confirmation:
    action: Literal["double_opt_in_confirmed", "challenge_expired", "no_open_challenge"]
    consent_id: uuid.UUID | None = None


async def confirm(
    session: AsyncSession,
    org: OrgScope,
    sender: PhoneNumber,
    reply: Message,
    keyword: str,
) -> Confirmation:
    """The contact replied YES/Y/CONFIRM: opt them in (method ``double_opt_in``,
    source ``sms``) with the challenge's texts and the reply as evidence. A
    challenge past its 24 hours is closed as expired and confirms nothing."""
    challenges = ChallengeRepository(session)
    challenge = await challenges.open_of(org, sender.id, reply.from_number, for_update=True)
    if challenge is None:
        return Confirmation("no_open_challenge")
    replied_at = reply.created_at
    if challenge.expires_at <= replied_at:
        await challenges.resolve(org, challenge.id, "expired", replied_at)
        return Confirmation("challenge_expired")
    change = ConsentChange(
        phone_number_id=sender.id,
        contact_number=reply.from_number,
        opted_in=True,
        occurred_at=replied_at,
        consent_method="double_opt_in",
        source="sms",
        reason=f"double_opt_in:{keyword}",
        evidence={
            "consent_method": "double_opt_in",
            "captured_at": format_rfc3339(replied_at),
            "agreement_text": challenge.agreement_text,
            "confirmation_text": challenge.confirmation_text,
            "challenge_id": str(challenge.id),
            "confirmation_message_id": str(challenge.message_id),
            "inbound_message_id": str(reply.id),
            "reply_text": reply.body,
            "replied_at": format_rfc3339(replied_at),
        },
        actor=contact_actor(reply),
        # The contact's own, present act: it may follow an earlier opt-out.
        refuse_stale=False,
    )
    result = await record_changes(session, org, [(0, change)])
    (accepted,) = result.accepted
    await challenges.resolve(
        org,
        challenge.id,
        "confirmed",
        replied_at,
        inbound_message_id=reply.id,
        consent_event_id=accepted.event_id,
    )
    return Confirmation("double_opt_in_confirmed", accepted.record.id)


def contact_actor(reply: Message) -> dict[str, str]:
    """Who did it, for history: the contact, by the SMS they sent."""
    return {"type": "contact", "contact_number": reply.from_number, "message_id": str(reply.id)}
