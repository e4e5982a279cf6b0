"""``POST /v1/consent/revocations``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentWrite
from agentmessage.kit.idempotency import Idempotent
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.revocations import service
from agentmessage.revocations.schemas import RevocationRequest

router = APIRouter(prefix="/v1/consent", tags=["Revocation"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post(
    "/revocations",
    status_code=status.HTTP_201_CREATED,
    summary="Record a revocation received outside SMS",
    description=(
        "The contact revoked by email, phone, web, in person or through an agent. "
        "Opts them out at once of one sender number, or of every number of the "
        "organization without `phone_number_id`; answered with `received_at`, "
        "`honored_at` and `honor_by` (the 10th US business day after the day of "
        "receipt, federal holidays excluded). Consent given after `received_at` "
        "stands: with `phone_number_id` that is 422 naming `received_at`; for every "
        "number, such a number answers `kept_later_consent`. Requires consent:write."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 422, 429),
)
async def record_revocation(
    body: RevocationRequest, caller: ConsentWrite, _idempotency: Idempotent, session: Session
) -> dict[str, Any]:
    return await service.revoke(session, caller, body)
