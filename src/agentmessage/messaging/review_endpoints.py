"""``GET /v1/consent/reviews`` and ``POST /v1/consent/reviews/{id}``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentRead, ConsentWrite
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.messaging import reviews

router = APIRouter(
    prefix="/v1/consent/reviews", tags=["Revocation"], route_class=TransactionalRoute
)
Session = Annotated[AsyncSession, Depends(get_session)]


class ReviewDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["revoke", "dismiss"]


@router.get(
    "",
    summary="Replies that may be revocations, for a person to decide",
    description=(
        "Inbound replies holding an opt-out word that no revocation rule could read "
        "(possible_revocation), newest first. `status`: pending (default), revoked, "
        "dismissed or all. Requires consent:read."
    ),
    responses=error_responses(401, 403, 422, 429),
)
async def list_reviews(
    caller: ConsentRead,
    session: Session,
    status: Annotated[Literal["pending", "revoked", "dismissed", "all"], Query()] = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> dict[str, Any]:
    data = await reviews.list_reviews(session, caller.org_id, status, limit)
    return {"data": data, "meta": {"count": len(data), "limit": limit}}


@router.post(
    "/{id}",
    summary="Decide a possible revocation",
    description=(
        "`revoke` opts the contact out as of when they wrote (method sms_keyword, "
        "source sms, reason review:revoke; nothing if they opted in again since); "
        "`dismiss` records that it was not one. Final: the same decision again "
        "answers it again, the other is 422. Requires consent:write."
    ),
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def decide_review(
    id: uuid.UUID, body: ReviewDecisionRequest, caller: ConsentWrite, session: Session
) -> dict[str, Any]:
    return await reviews.decide(session, caller, id, body.action)
