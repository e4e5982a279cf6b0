"""Twilio's webhooks: inbound SMS and delivery status callbacks.

No API key: the ``X-Twilio-Signature`` header is the credential. It is checked
(with the ``twilio`` package's ``RequestValidator`` and the account's auth token)
against the URL Twilio called, which is ``AGENTMESSAGE_PUBLIC_BASE_URL`` + the
path and query: behind a proxy the scheme and host we see are not the ones Twilio
signed. A missing or forged signature is 403 before anything is read or written.
"""

from __future__ import annotations

import logging
from typing import Annotated, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import BadRequest, Forbidden
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.messaging import inbound, service
from agentmessage.messaging.endpoints import wake_dispatcher_after_commit
from agentmessage.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks/twilio", tags=["Webhooks"], route_class=TransactionalRoute)
Session = Annotated[AsyncSession, Depends(get_session)]

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
_MAX_FIELDS: Final = 200


class FormParams(dict[str, list[str]]):
    """Form fields with every value of a repeated name, as the validator reads them."""

    def getlist(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None


async def signed_form(request: Request) -> FormParams:
    """The webhook's form fields, once its Twilio signature checks out; else 403."""
    settings: Settings = request.app.state.settings
    signature = request.headers.get(SIGNATURE_HEADER)
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(
            details={"body": "must be an application/x-www-form-urlencoded form"}
        ) from None
    params = FormParams()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    token = settings.twilio_auth_token
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if (
        token is None
        or not signature
        or not RequestValidator(token.get_secret_value()).validate(url, params, signature)
    ):
        log.warning("Twilio webhook refused: missing or invalid %s", SIGNATURE_HEADER)
        raise Forbidden(f"missing or invalid {SIGNATURE_HEADER}")
    return params


SignedForm = Annotated[FormParams, Depends(signed_form)]

_FORBIDDEN = error_responses(403)
_FORBIDDEN[403]["description"] = "Missing or invalid X-Twilio-Signature: nothing changed"
_FORBIDDEN[403]["content"]["application/json"]["example"]["error"]["message"] = (
    f"missing or invalid {SIGNATURE_HEADER}"
)


@router.post(
    "/sms",
    summary="Twilio inbound SMS webhook",
    description=(
        "Set this URL (AGENTMESSAGE_PUBLIC_BASE_URL + /webhooks/twilio/sms) as your "
        "Twilio number's 'A message comes in' webhook (HTTP POST). The SMS is stored "
        "(once, whatever Twilio retries) and its keyword acts: STOP and the other "
        "opt-out words, START/UNSTOP, HELP/INFO, YES/Y/CONFIRM. Replies go out through "
        "the outbox, so the answer is always empty TwiML."
    ),
    response_class=Response,
    responses={
        200: {"content": {"text/xml": {"example": EMPTY_TWIML}}, "description": "Empty TwiML"},
        **_FORBIDDEN,
        **error_responses(400),
    },
)
async def twilio_inbound_sms(
    request: Request, form: SignedForm, session: Session, tasks: BackgroundTasks
) -> Response:
    sid = form.first("MessageSid") or form.first("SmsSid")
    sender, recipient = form.first("From"), form.first("To")
    if not sid or sender is None or recipient is None:
        raise BadRequest(details={"body": "needs MessageSid, From and To"})
    sms = inbound.InboundSms(
        provider="twilio",
        provider_message_id=sid,
        from_number=sender,
        to_number=recipient,
        body=form.first("Body") or "",
        received_at=utcnow(),
    )
    outcome = await inbound.receive_from_provider(session, sms)
    if outcome is not None and outcome.replies:
        wake_dispatcher_after_commit(request, tasks)
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/status",
    status_code=204,
    summary="Twilio message status callback",
    description=(
        "Twilio reports delivery here (the StatusCallback of every message this "
        "server sends: AGENTMESSAGE_PUBLIC_BASE_URL + /webhooks/twilio/status). "
        "delivered/read -> delivered, undelivered/failed -> failed with Twilio's "
        "ErrorCode; a report never moves a message backwards."
    ),
    response_class=Response,
    responses={**_FORBIDDEN, **error_responses(400)},
)
async def twilio_status_callback(form: SignedForm, session: Session) -> Response:
    sid = form.first("MessageSid") or form.first("SmsSid")
    reported = form.first("MessageStatus") or form.first("SmsStatus")
    if not sid or not reported:
        raise BadRequest(details={"body": "needs MessageSid and MessageStatus"})
    await service.apply_delivery_report(
        session, "twilio", sid, reported, form.first("ErrorCode") or None
    )
    return Response(status_code=204)
