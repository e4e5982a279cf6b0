"""POST /v1/consent/hosted: mint a signed hosted-form link (seed 003)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentWrite
from agentmessage.hosted import service
from agentmessage.hosted.schemas import HostedFormRequest, HostedFormToken
from agentmessage.kit.idempotency import Idempotent
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.settings import Settings

router = APIRouter(prefix="/v1/consent", tags=["Consent"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post(
    "/hosted",
    status_code=status.HTTP_201_CREATED,
    response_model=HostedFormToken,
    summary="Mint a hosted-form consent token",
    description=(
        "Mint a signed token bound to the organization, phone number, contact number, "
        "agreement text, and an expiry, and return the public URL to hand to the end "
        "user. The end user opens the URL, reviews a consent form pre-bound with the "
        "agreement text, and submits. AgentMessage records the evidence and the opt-in "
        "with a consent method of hosted_form. Every call mints a new token (201 "
        "Created). The token is single-use in spirit: a duplicate submit on an already "
        "opted-in contact is idempotent. It expires after expires_in seconds (60 to "
        "86400, default one hour). Works on every plan. Send an Idempotency-Key to "
        "retry safely. Requires the consent:write scope."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def mint_hosted_form(
    request: Request,
    body: HostedFormRequest,
    caller: ConsentWrite,
    _idempotency: Idempotent,
    session: Session,
) -> HostedFormToken:
    settings: Settings = request.app.state.settings
    minted = await service.mint(
        session,
        caller,
        body,
        secret=settings.signing_secret,
        public_base_url=settings.public_base_url,
    )
    return HostedFormToken(token=minted.token, url=minted.url, expires_at=minted.expires_at)
