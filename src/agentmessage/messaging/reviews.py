"""Possible revocations: replies holding an opt-out word that no rule could read.

A person decides: ``revoke`` records the opt-out (as of when the contact wrote,
method sms_keyword, source sms, reason ``review:revoke``); ``dismiss`` records
that the reply was not one. Either decision is an append-only row, and a
decision is final: asking again for the same one answers it again, asking for
the other is refused.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller, OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository, ContactKey
from agentmessage.db.models import ConsentReview, ConsentReviewDecision, Message, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.ids import new_id
from agentmessage.kit.timefmt import format_rfc3339

Action = Literal["revoke", "dismiss"]
Status = Literal["pending", "revoked", "dismissed", "all"]
_STATUS_OF = {"revoke": "revoked", "dismiss": "dismissed"}


async def flag_for_review(
    session: AsyncSession, org: OrgScope, sender: PhoneNumber, message: Message, rule: str
) -> ConsentReview:
    review = ConsentReview(
        org_id=org,
        id=new_id(),
        phone_number_id=sender.id,
        contact_number=message.from_number,
        message_id=message.id,
        body=message.body,
        rule=rule[:64],
        received_at=message.created_at,
        created_at=utcnow(),
    )
    session.add(review)
    await session.flush()
    return review


def review_json(review: ConsentReview, decision: ConsentReviewDecision | None) -> dict[str, Any]:
    return {
        "id": str(review.id),
        "status": _STATUS_OF[decision.action] if decision else "pending",
        "phone_number_id": str(review.phone_number_id),
        "contact_number": review.contact_number,
        "message_id": str(review.message_id),
        "body": review.body,
        "rule": review.rule,
        "received_at": format_rfc3339(review.received_at),
        "decided_at": format_rfc3339(decision.decided_at) if decision else None,
        "consent_event_id": str(decision.consent_event_id)
        if decision and decision.consent_event_id
        else None,
    }


async def list_reviews(
    session: AsyncSession, org: OrgScope, status: Status, limit: int
) -> list[dict[str, Any]]:
    statement = (
        select(ConsentReview, ConsentReviewDecision)
        .outerjoin(
            ConsentReviewDecision,
            (ConsentReviewDecision.org_id == ConsentReview.org_id)
            & (ConsentReviewDecision.review_id == ConsentReview.id),
        )
        .where(ConsentReview.org_id == org)
        .order_by(ConsentReview.created_at.desc(), ConsentReview.id.desc())
    )
    if status == "pending":
        statement = statement.where(ConsentReviewDecision.review_id.is_(None))
    elif status != "all":
        action = "revoke" if status == "revoked" else "dismiss"
        statement = statement.where(ConsentReviewDecision.action == action)
    rows = await session.execute(statement.limit(limit))
    return [review_json(review, decision) for review, decision in rows]


async def decide(
    session: AsyncSession, caller: Caller, review_id: uuid.UUID, action: Action
) -> dict[str, Any]:
    org = caller.org_id
    review = await session.get(ConsentReview, (org, review_id))
    if review is None:
        raise NotFound("review not found")
    decided = await session.get(ConsentReviewDecision, (org, review_id), with_for_update=True)
    if decided is not None:
        if decided.action != action:
            raise ValidationFailed(
                details={"action": f"the review was already decided: {decided.action}"}
            )
        return review_json(review, decided)
    event_id = None
    if action == "revoke":
        event_id = await _revoke(session, caller, review)
    decision = ConsentReviewDecision(
        org_id=org,
        review_id=review.id,
        action=action,
        actor=caller.actor,
        consent_event_id=event_id,
        decided_at=utcnow(),
    )
    session.add(decision)
    await session.flush()
    return review_json(review, decision)


async def _revoke(session: AsyncSession, caller: Caller, review: ConsentReview) -> uuid.UUID | None:
    """The opt-out, as of when the contact wrote; nothing if they are already out
    or opted in again since (their later consent stands)."""
    key = ContactKey(review.phone_number_id, review.contact_number)
    state = (await ConsentRepository(session).lock_states(caller.org_id, [key])).get(key)
    if state is not None and (
        not state.opted_in or (state.opted_in_at and state.opted_in_at > review.received_at)
    ):
        return None
    change = ConsentChange(
        phone_number_id=review.phone_number_id,
        contact_number=review.contact_number,
        opted_in=False,
        occurred_at=review.received_at,
        consent_method="sms_keyword",
        source="sms",
        reason="review:revoke",
        evidence={
            "consent_method": "sms_keyword",
            "captured_at": format_rfc3339(review.received_at),
            "review_id": str(review.id),
            "inbound_message_id": str(review.message_id),
            "reply_text": review.body,
            "flagged_by": review.rule,
        },
        actor=caller.actor,
    )
    (accepted,) = (await record_changes(session, caller.org_id, [(0, change)])).accepted
    return accepted.event_id
