"""/v1/consent: capture, list, read, history, revoke."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth import ratelimit
from agentmessage.auth.dependencies import ConsentRead, ConsentWrite, require
from agentmessage.auth.service import Caller
from agentmessage.consent import service
from agentmessage.consent.repository import ListFilters
from agentmessage.consent.schemas import (
    BulkCaptureRequest,
    BulkCaptureResult,
    BulkRejection,
    ConsentCapture,
    ConsentEventOut,
    ConsentHistory,
    ConsentList,
    ConsentMethod,
    ConsentRecordOut,
    HistoryMeta,
    ListMeta,
)
from agentmessage.kit.errors import ValidationFailed
from agentmessage.kit.idempotency import Idempotent
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.phone import e164_problem
from agentmessage.kit.routing import TransactionalRoute, get_session, one_snapshot
from agentmessage.kit.timefmt import ClientTime
from agentmessage.orgs.plans import PLAN_REQUIRED_MESSAGE

router = APIRouter(prefix="/v1/consent", tags=["Consent"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]
ConsentId = Annotated[uuid.UUID, "the consent record's id"]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentRecordOut,
    summary="Capture attested consent",
    description=(
        "Record that a contact opted in (or out), with the evidence of how and when. "
        "Creates the record (201) or updates the existing one for that sender number "
        "and contact (200); either way one history event is appended. Opt-in capture "
        "requires a plan with attested capture (payg, growth, scale, enterprise); "
        "opt-outs are never plan-gated. Send an Idempotency-Key to retry safely. "
        "Requires the consent:write scope."
    ),
    responses={
        200: {"model": ConsentRecordOut, "description": "Existing record updated"},
        **error_responses(
            400, 401, 403, 404, 409, 413, 422, 429, plan_message=PLAN_REQUIRED_MESSAGE
        ),
    },
)
async def capture_consent(
    body: ConsentCapture,
    caller: ConsentWrite,
    _idempotency: Idempotent,
    session: Session,
    response: Response,
) -> ConsentRecordOut:
    result = await service.capture(session, caller, body)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return ConsentRecordOut.model_validate(result.record)


@router.post(
    "/bulk",
    response_model=BulkCaptureResult,
    summary="Bulk-capture attested consent",
    description=(
        "Capture up to 1000 attested consent records in one call. Each record is "
        "processed independently, so one bad record does not reject the rest. The "
        "response returns an accepted count plus a rejected array indexed against your "
        "input. Per-record validation matches the single endpoint at POST /v1/consent. "
        "The plan gate and per-organization rate limiting also match the single "
        "endpoint, with one difference: a bulk call counts against the rate limit by the "
        "number of records in the body. A batch larger than your per-minute allowance "
        "returns 422 VALIDATION_FAILED with a details.records hint to split the batch. "
        "The request body is capped at 8 MiB; an empty records array returns 422 "
        "VALIDATION_FAILED. Requires the consent:write scope."
    ),
    responses=error_responses(
        400, 401, 403, 404, 409, 413, 422, 429, plan_message=PLAN_REQUIRED_MESSAGE
    ),
)
async def bulk_capture(
    request: Request,
    body: BulkCaptureRequest,
    caller: Annotated[Caller, Depends(require("consent:write", charge=False))],
    _idempotency: Idempotent,
    session: Session,
) -> BulkCaptureResult:
    # A bulk call costs its record count; charged before the request's own
    # transaction touches the database.
    await ratelimit.charge(request, caller, cost=len(body.records), field="records")
    result = await service.capture_bulk(session, caller, body.records)
    return BulkCaptureResult(
        accepted=len(result.accepted),
        rejected=[
            BulkRejection(index=r.index, code=r.code, reason=r.reason) for r in result.rejected
        ],
    )


@router.get(
    "",
    response_model=ConsentList,
    summary="List consent records",
    description=(
        "Page over your organization's consent records, most recently updated first. "
        "Cursor pagination surfaces the next-page cursor in meta.next_cursor; the last "
        "page renders next_cursor: null. Requires the consent:read scope."
    ),
    responses=error_responses(401, 403, 422, 429),
)
@one_snapshot
async def list_consents(
    request: Request,
    caller: ConsentRead,
    session: Session,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    contact_number: Annotated[str | None, Query(examples=["+15554443333"])] = None,
    phone_number_id: uuid.UUID | None = None,
    opted_in: bool | None = None,
    since: Annotated[ClientTime | None, Query(description="updated_at >= since")] = None,
    consent_method: ConsentMethod | None = None,
) -> ConsentList:
    if contact_number is not None and (problem := e164_problem(contact_number)):
        raise ValidationFailed(details={"contact_number": problem})
    filters = ListFilters(
        contact_number=contact_number,
        phone_number_id=phone_number_id,
        opted_in=opted_in,
        since=since,
        consent_method=consent_method,
    )
    page = await service.list_page(
        session,
        caller.org_id,
        filters,
        limit=limit,
        cursor=cursor,
        secret=request.app.state.settings.signing_secret,
    )
    return ConsentList(
        data=[ConsentRecordOut.model_validate(r) for r in page.records],
        meta=ListMeta(
            total=page.total, limit=page.limit, offset=page.offset, next_cursor=page.next_cursor
        ),
    )


@router.get(
    "/{id}",
    response_model=ConsentRecordOut,
    summary="Retrieve a consent record",
    description="Requires the consent:read scope.",
    responses=error_responses(400, 401, 403, 404, 429),
)
async def get_consent(id: uuid.UUID, caller: ConsentRead, session: Session) -> ConsentRecordOut:
    return ConsentRecordOut.model_validate(await service.get(session, caller.org_id, id))


@router.get(
    "/{id}/history",
    response_model=ConsentHistory,
    summary="A consent record's history",
    description=(
        "Every opt-in and opt-out of the record, oldest first, with its evidence exactly "
        "as received, who made it and when. History is append-only. Requires the "
        "consent:read scope."
    ),
    responses=error_responses(400, 401, 403, 404, 429),
)
async def consent_history(id: uuid.UUID, caller: ConsentRead, session: Session) -> ConsentHistory:
    events = await service.history(session, caller.org_id, id)
    return ConsentHistory(
        data=[ConsentEventOut.model_validate(e) for e in events],
        meta=HistoryMeta(total=len(events)),
    )


@router.delete(
    "/{id}",
    response_model=ConsentRecordOut,
    summary="Revoke (opt out) a consent record",
    description=(
        "Opt the contact out: the record is set to opted out with an opt-out timestamp, "
        "a source of api, and an opt-out history entry. Idempotent: calling again on an "
        "already opted-out record returns the existing state without writing a second "
        "history entry. Requests for a record outside your organization return 404 "
        "NOT_FOUND so consent ids cannot be enumerated. Requires the consent:write scope."
    ),
    responses=error_responses(400, 401, 403, 404, 429),
)
async def revoke_consent(id: uuid.UUID, caller: ConsentWrite, session: Session) -> ConsentRecordOut:
    return ConsentRecordOut.model_validate(await service.revoke(session, caller, id))
