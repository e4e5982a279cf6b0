"""The public hosted-form page: ``GET /consent/{token}`` and its submit.

HTML, not the JSON envelope, and no API key: the signed token is the credential.
Works without JavaScript (there is none). Every answer, error pages included,
carries the security headers of ``html.SECURITY_HEADERS``. The token is part of
the path, which the access log never writes (it logs the route template).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.hosted import csrf, service
from agentmessage.hosted.html import (
    SECURITY_HEADERS,
    human_date,
    human_number,
    last_four,
    page,
    problem_page,
    render_agreement,
)
from agentmessage.hosted.token import HostedFormError
from agentmessage.kit.clientip import client_ip
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.settings import Settings

NOT_AGREED = "Tick the box to agree, then submit. Nothing has been recorded yet."
CSRF_FAILED = (
    "This form could not be accepted (it may have been open for a long time, or "
    "sent from another site). Please review it and submit again. Nothing has been recorded."
)
_MAX_FIELDS = 10


class HostedPageRoute(TransactionalRoute):
    """A transactional route that answers link problems with an HTML page (after the
    rollback) and puts the security headers on every response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except HostedFormError as problem:
                response = problem_page(problem.kind, problem.status)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page_handler


router = APIRouter(prefix="/consent", tags=["Hosted form"], route_class=HostedPageRoute)
Session = Annotated[AsyncSession, Depends(get_session)]

_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed or tampered link (HTML page)"},
    404: {"description": "No such form, or its organization no longer owns the number"},
    410: {"description": "Expired link (HTML page)"},
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get(
    "/{token}",
    response_class=HTMLResponse,
    summary="The hosted consent form (public HTML page)",
    description=(
        "The page a contact opens: the business, its sender number, the exact agreement "
        "text, an unticked checkbox and a submit button. No API key: the token is the "
        "credential."
    ),
    responses=_PAGE_RESPONSES,
)
async def show_form(token: str, request: Request, session: Session) -> Response:
    settings = _settings(request)
    opened = await service.open_form(session, token, secret=settings.signing_secret)
    if opened.form.submitted_at is not None:
        return _done(opened, recorded=False)
    return _form(request, opened)


@router.post(
    "/{token}",
    response_class=HTMLResponse,
    summary="Submit the hosted consent form",
    description=(
        "With the box ticked: records the opt-in (method and source hosted_form) with "
        "its evidence and answers a thank-you page; without it, the form again (422). "
        "A second submit changes nothing and says so. Cross-site submits are refused "
        "(403, the form again)."
    ),
    responses={
        **_PAGE_RESPONSES,
        403: {"description": "Cross-site or stale submit: the form again"},
        422: {"description": "Box not ticked: the form again"},
    },
)
async def submit_form(token: str, request: Request, session: Session) -> Response:
    settings = _settings(request)
    opened = await service.open_form(session, token, secret=settings.signing_secret)
    if opened.form.submitted_at is not None:
        return _done(opened, recorded=False)
    fields = await _form_fields(request)
    cookie = request.cookies.get(csrf.COOKIE)
    if csrf.cross_site(request.headers, settings.public_base_url) or not csrf.field_matches(
        settings.signing_secret, cookie, fields.get(csrf.FIELD), opened.form.id
    ):
        return _form(request, opened, status=403, message=CSRF_FAILED)
    if fields.get("agree") != "yes":
        return _form(request, opened, status=422, message=NOT_AGREED, not_agreed=True)
    result = await service.submit(session, opened, _visit(request, token, opened))
    return _done(opened, recorded=result.recorded, submitted_at=result.submitted_at)


def _visit(request: Request, token: str, opened: service.OpenForm) -> service.Submission:
    """What this browser sent and was shown, for the evidence."""
    settings = _settings(request)
    return service.Submission(
        ip_address=client_ip(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            settings.trusted_proxy_networks,
        ),
        user_agent=request.headers.get("user-agent"),
        # The URL as minted (what the contact was sent), not as a proxy forwarded it.
        form_url=service.form_url(settings.public_base_url, token),
        rendered_agreement_sha256=render_agreement(opened.form.agreement_text).sha256,
    )


async def _form_fields(request: Request) -> dict[str, str]:
    """The urlencoded fields of the body (first value of each); empty when it is not
    a form post: the CSRF check then refuses it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _form(
    request: Request,
    opened: service.OpenForm,
    *,
    status: int = 200,
    message: str | None = None,
    not_agreed: bool = False,
) -> Response:
    settings = _settings(request)
    found = request.cookies.get(csrf.COOKIE)
    # Kept when usable, so that two open tabs of the form both stay valid.
    fresh = found is None or not csrf.usable_cookie(found)
    cookie = csrf.new_cookie_value() if found is None or fresh else found
    response = page(
        "form.html",
        status,
        org_name=opened.organization_name,
        sender_number=human_number(opened.sender_number),
        contact_last4=last_four(opened.form.contact_number),
        agreement=render_agreement(opened.form.agreement_text).html,
        csrf=csrf.field_value(settings.signing_secret, cookie, opened.form.id),
        message=message,
        not_agreed=not_agreed,
    )
    if fresh:
        response.set_cookie(
            csrf.COOKIE,
            cookie,
            path=csrf.cookie_path(settings.public_base_url),
            secure=csrf.cookie_secure(settings.public_base_url),
            httponly=True,
            samesite="strict",
        )
    return response


def _done(
    opened: service.OpenForm, *, recorded: bool, submitted_at: datetime | None = None
) -> HTMLResponse:
    at = submitted_at or opened.form.submitted_at
    return page(
        "done.html",
        org_name=opened.organization_name,
        sender_number=human_number(opened.sender_number),
        contact_last4=last_four(opened.form.contact_number),
        recorded=recorded,
        submitted_on=human_date(at) if at is not None else None,
    )
