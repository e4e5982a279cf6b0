"""``POST /v1/consent/check`` and ``GET /v1/consent/decisions/{id}``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentRead
from agentmessage.decisions import service
from agentmessage.decisions.schemas import CheckRequest, Decision
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.responses import FastJSONResponse
from agentmessage.kit.routing import TransactionalRoute, get_session

router = APIRouter(prefix="/v1/consent", tags=["Send decisions"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post(
    "/check",
    response_model=Decision,
    summary="May I text these contacts?",
    description=(
        "For 1 to 1000 contacts and one sender number: `allowed` and its `reason` "
        "(opted_in, opted_out, no_consent, pending_confirmation, number_deactivated, "
        "invalid_number), with the record's id, times and method. With `at`, the "
        "answer as of that moment, from history (events that had taken effect by "
        "then). Every call is stored as a decision (`decision_id`), readable again "
        "with GET /v1/consent/decisions/{id}. Requires the consent:read scope."
    ),
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
)
async def check_consent(body: CheckRequest, caller: ConsentRead, session: Session) -> Response:
    # Built by the service in the documented shape: serialized as is (re-validating
    # a thousand answers against the model would cost a third of the call).
    return FastJSONResponse(await service.check(session, caller, body))


@router.get(
    "/decisions/{id}",
    response_model=Decision,
    summary="A stored send decision",
    description="The question and the answers of one check, as given. Requires consent:read.",
    responses=error_responses(400, 401, 403, 404, 429),
)
async def get_decision(id: uuid.UUID, caller: ConsentRead, session: Session) -> Response:
    return FastJSONResponse(await service.get_decision(session, caller.org_id, id))
