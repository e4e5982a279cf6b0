"""POST /v1/deactivations: the caller's own deactivation feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentWrite
from agentmessage.deactivations.schemas import DeactivatedAt
from agentmessage.deactivations.service import Deactivation, apply_deactivations
from agentmessage.kit.idempotency import Idempotent
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.phone import E164
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.kit.timefmt import format_rfc3339

router = APIRouter(
    prefix="/v1/deactivations", tags=["Deactivations"], route_class=TransactionalRoute
)

MAX_DEACTIVATIONS = 10_000


class DeactivationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: E164
    deactivated_at: DeactivatedAt


class DeactivationsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "deactivations": [
                        {"number": "+15554443333", "deactivated_at": "2026-04-20"},
                        {"number": "+15554443334", "deactivated_at": "2026-04-21T08:30:00Z"},
                    ]
                }
            ]
        },
    )

    deactivations: Annotated[
        list[DeactivationIn], Field(min_length=1, max_length=MAX_DEACTIVATIONS)
    ]


class DeactivationsResult(BaseModel):
    received: int = Field(description="Entries in the request.")
    opted_out: int = Field(description="Consent records opted out because of them.")


@router.post(
    "",
    response_model=DeactivationsResult,
    summary="Report deactivated numbers",
    description=(
        "Up to 10,000 numbers with the time (or date) a carrier deactivated them. Every "
        "opted-in consent record of such a contact whose latest opt-in is older than the "
        "deactivation becomes opted out (source system, method unchanged, history reason "
        "number_deactivated): consent given by a number's previous owner does not carry "
        "over. A date means the end of that day (UTC). Applies to your organization only; "
        "idempotent. Requires the consent:write scope."
    ),
    responses=error_responses(400, 401, 403, 409, 413, 422, 429),
)
async def report_deactivations(
    request: Request,
    body: DeactivationsRequest,
    caller: ConsentWrite,
    _idempotency: Idempotent,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> DeactivationsResult:
    request_id = str(request.state.request_id)
    deactivations = [
        Deactivation(
            number=entry.number,
            deactivated_at=entry.deactivated_at,
            evidence={
                "channel": "api",
                "request_id": request_id,
                "deactivated_at": format_rfc3339(entry.deactivated_at),
            },
        )
        for entry in body.deactivations
    ]
    opted_out = await apply_deactivations(session, caller.org_id, deactivations, caller.actor)
    return DeactivationsResult(received=len(deactivations), opted_out=opted_out)
