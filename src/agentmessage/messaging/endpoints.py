"""Double opt-in (seed 002), ``GET /v1/messages/{id}`` and the sandbox's inbound SMS."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentWrite, MessagesRead, MessagesWrite
from agentmessage.db.models import Message
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.idempotency import Idempotent
from agentmessage.kit.ids import new_id
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.messaging import double_opt_in, inbound, service
from agentmessage.messaging.repository import MessageRepository
from agentmessage.messaging.schemas import (
    SEED_RESULT,
    DoubleOptInRequest,
    DoubleOptInResult,
    MessageOut,
    SandboxInboundRequest,
    SandboxInboundResult,
)
from agentmessage.settings import Settings

router = APIRouter(route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


def wake_dispatcher_after_commit(request: Request, tasks: BackgroundTasks) -> None:
    """Background tasks run after the response, so after the route's commit: the
    in-process dispatcher sends what this request queued without waiting to poll."""
    tasks.add_task(request.app.state.dispatcher.wake)


def message_out(message: Message) -> MessageOut:
    return MessageOut(
        id=message.id,
        direction=message.direction,
        from_=message.from_number,
        to=message.to_number,
        body=message.body,
        status=message.status,
        error_code=message.error_code,
        created_at=message.created_at,
        updated_at=message.updated_at,
    )


_RESULT_EXAMPLES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "New challenge: the confirmation SMS is queued",
        "content": {"application/json": {"example": SEED_RESULT}},
    },
    200: {
        "model": DoubleOptInResult,
        "description": "An open challenge was reused, or the contact is already opted in: "
        "no SMS sent",
        "content": {
            "application/json": {
                "examples": {
                    "reused": {"value": {**SEED_RESULT, "reused": True}},
                    "already_opted_in": {
                        "value": {
                            "consent_pending_id": None,
                            "confirmation_message_id": None,
                            "expires_at": None,
                            "reused": False,
                            "already_opted_in": True,
                        }
                    },
                }
            }
        },
    },
}


@router.post(
    "/v1/consent/double-opt-in",
    tags=["Consent"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DoubleOptInResult,
    summary="Start a double-opt-in challenge",
    description=(
        "Send a CTIA-compliant YES/CONFIRM challenge SMS to a contact and open a pending "
        "consent challenge (24 hours). When the contact replies YES, Y or CONFIRM, "
        "AgentMessage records the opt-in with a consent method of double_opt_in.\n\n"
        "Idempotent on the combination of organization, phone number, and contact "
        "number: an open challenge for the same combination returns 200 with the "
        "existing pending id and reused=true, and no second SMS is sent (even for "
        "concurrent requests); a contact already opted in returns 200 with "
        "already_opted_in=true and no SMS; a new challenge returns 202 with the queued "
        "confirmation message id (track it with GET /v1/messages/{id}). A contact who "
        "opted out gets no SMS: 422, they must reply START or use the hosted form. "
        "confirmation_text must contain YES, STOP and HELP. Works on every plan. An "
        "optional Idempotency-Key header is accepted. Requires the consent:write scope."
    ),
    responses={**_RESULT_EXAMPLES, **error_responses(400, 401, 403, 404, 409, 413, 422, 429)},
)
async def start_double_opt_in(
    request: Request,
    body: DoubleOptInRequest,
    caller: ConsentWrite,
    _idempotency: Idempotent,
    session: Session,
    response: Response,
    tasks: BackgroundTasks,
) -> DoubleOptInResult:
    outcome = await double_opt_in.start(session, caller, body)
    if outcome.created:
        wake_dispatcher_after_commit(request, tasks)
    else:
        response.status_code = status.HTTP_200_OK
    return DoubleOptInResult(
        consent_pending_id=outcome.challenge_id,
        confirmation_message_id=outcome.message_id,
        expires_at=outcome.expires_at,
        reused=outcome.reused,
        already_opted_in=outcome.already_opted_in,
    )


@router.get(
    "/v1/messages/{id}",
    tags=["Messages"],
    response_model=MessageOut,
    summary="Retrieve a message",
    description=(
        "An SMS sent or received: direction, from, to, body, status (outbound: queued, "
        "sending, sent, delivered or failed; inbound: received), the error code of a "
        "failed message, and timestamps. Requires the messages:read scope."
    ),
    responses=error_responses(400, 401, 403, 404, 429),
)
async def get_message(id: uuid.UUID, caller: MessagesRead, session: Session) -> MessageOut:
    return message_out(await service.get_message(session, caller.org_id, id))


@router.post(
    "/v1/sandbox/inbound",
    tags=["Sandbox"],
    status_code=status.HTTP_201_CREATED,
    response_model=SandboxInboundResult,
    summary="Play the contact: inject an inbound SMS (sandbox provider)",
    description=(
        "Deliver an SMS from a contact (`from`) to one of your sender numbers (`to`) "
        "through the same code path as a real provider webhook: it is stored, and a "
        "keyword acts (YES/Y/CONFIRM confirms an open double opt-in challenge; STOP and "
        "the other opt-out words opt out; START/UNSTOP opt back in; HELP/INFO answer "
        "with the help text). The answer says what the reply did and which SMS were "
        "queued in return. Only while the server's SMS provider is `sandbox` "
        "(AGENTMESSAGE_SMS_PROVIDER); otherwise 404. Requires the messages:write scope."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def sandbox_inbound(
    request: Request,
    body: SandboxInboundRequest,
    caller: MessagesWrite,
    _idempotency: Idempotent,
    session: Session,
    tasks: BackgroundTasks,
) -> SandboxInboundResult:
    settings: Settings = request.app.state.settings
    if settings.sms_provider != "sandbox":
        raise NotFound(
            "the sandbox is off: this server sends through "
            f"{settings.sms_provider} (AGENTMESSAGE_SMS_PROVIDER)"
        )
    sender = await MessageRepository(session).sender_by_number(caller.org_id, body.to)
    if sender is None:
        raise ValidationFailed(details={"to": "is not a sender number of your organization"})
    sms = inbound.InboundSms(
        provider="sandbox",
        provider_message_id=f"SB{new_id().hex}",
        from_number=body.from_,
        to_number=body.to,
        body=body.body,
        received_at=utcnow(),
    )
    outcome = await inbound.receive(session, caller.org_id, sender, sms)
    if outcome.replies:
        wake_dispatcher_after_commit(request, tasks)
    return SandboxInboundResult(
        message=message_out(outcome.message),
        action=outcome.action,
        keyword=outcome.keyword,
        consent_id=outcome.consent_id,
        rule=outcome.rule,
        replies=[message_out(m) for m in outcome.replies],
    )
