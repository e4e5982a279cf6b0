"""``GET /v1/compliance/revocations``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentRead
from agentmessage.compliance import report
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.kit.timefmt import ClientTime

router = APIRouter(prefix="/v1/compliance", tags=["Compliance"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


@router.get(
    "/revocations",
    summary="Revocations in a period: timings and breaches",
    description=(
        "Every revocation received in [from, to) (keywords, phrases, reviewed replies, "
        "other channels): channel, received, honored, honor_by, the SMS confirmation's "
        "status and when it was sent, and the breaches: honored after honor_by, or a "
        "confirmation later than 5 minutes (or skipped_late). Requires consent:read."
    ),
    responses=error_responses(401, 403, 422, 429),
)
async def revocations_report(
    caller: ConsentRead,
    session: Session,
    start: Annotated[ClientTime, Query(alias="from", description="Start, inclusive.")],
    end: Annotated[ClientTime, Query(alias="to", description="End, exclusive.")],
) -> dict[str, Any]:
    return await report.revocations(session, caller.org_id, start, end)
