"""Revocations received by email, phone, web, in person or by an agent: opted out
at once for one sender number or for all of them, with the FCC clock."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository, ContactKey
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.revocations.clock import honor_by
from agentmessage.revocations.schemas import RevocationRequest


async def revoke(session: AsyncSession, caller: Caller, body: RevocationRequest) -> dict[str, Any]:
    """Opt the contact out of one sender number, or of every number, as of
    ``received_at``. A number already opted out is left alone. A number whose
    consent was given after ``received_at`` keeps it: that later consent stands.
    Naming one number, that is ValidationFailed on ``received_at`` (nothing
    written); for every number, those numbers answer ``kept_later_consent``.
    NotFound for a number not the organization's. Flushes, never commits."""
    org = caller.org_id
    repo = ConsentRepository(session)
    numbers = await repo.sender_numbers(org)
    if body.phone_number_id is not None:
        if body.phone_number_id not in numbers:
            raise NotFound("phone number not found")
        targets = [body.phone_number_id]
    else:
        targets = sorted(numbers, key=str)
    honored_at = utcnow()
    deadline = honor_by(body.received_at)
    keys = [ContactKey(n, body.contact_number) for n in targets]
    before = await repo.lock_states(org, keys)
    evidence = {
        "channel": body.channel,
        "received_at": format_rfc3339(body.received_at),
        "honored_at": format_rfc3339(honored_at),
        "honor_by": deadline.isoformat(),
        **({"text": body.text} if body.text is not None else {}),
    }
    changes = []
    for index, key in enumerate(keys):
        state = before.get(key)
        if state is not None and not state.opted_in:
            continue  # already out: nothing to honor on this number
        changes.append(
            (
                index,
                ConsentChange(
                    phone_number_id=key.phone_number_id,
                    contact_number=body.contact_number,
                    opted_in=False,
                    occurred_at=body.received_at,
                    # A number without a record gets one, opted out: a later,
                    # older opt-in cannot undo the revocation.
                    consent_method=None if state is not None else "attested",
                    source="api",
                    reason=f"revocation:{body.channel}",
                    evidence=evidence,
                    actor=caller.actor,
                ),
            )
        )
    result = await record_changes(session, org, changes)
    # The only rejection left: the opt-out is dated before the number's opt-in.
    kept = {r.index for r in result.rejected}
    if kept and body.phone_number_id is not None:
        (reason,) = result.rejected[0].details.values()
        raise ValidationFailed(details={"received_at": reason})
    done = {a.index: a for a in result.accepted}
    numbers_out = []
    for index, key in enumerate(keys):
        accepted = done.get(index)
        state = before.get(key)
        consent_id = accepted.record.id if accepted else state.id if state else None
        action = "opted_out" if accepted else "already_opted_out"
        if index in kept:
            action = "kept_later_consent"
        numbers_out.append(
            {
                "phone_number_id": str(key.phone_number_id),
                "phone_number": numbers[key.phone_number_id],
                "consent_id": str(consent_id) if consent_id else None,
                "action": action,
                "event_id": str(accepted.event_id) if accepted else None,
            }
        )
    return {
        "contact_number": body.contact_number,
        "channel": body.channel,
        "received_at": format_rfc3339(body.received_at),
        "honored_at": format_rfc3339(honored_at),
        "honor_by": deadline.isoformat(),
        "numbers": numbers_out,
    }
