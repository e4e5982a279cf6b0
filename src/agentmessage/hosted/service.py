"""Hosted-form rules: mint a signed link, open it, record its submit. Services
flush; the route commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.db.models import HostedForm
from agentmessage.hosted.repository import HostedFormRepository
from agentmessage.hosted.schemas import HostedFormRequest
from agentmessage.hosted.token import (
    FormClaims,
    InvalidLink,
    UnknownLink,
    agreement_digest,
    sign,
    verify,
)
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound
from agentmessage.kit.ids import new_id
from agentmessage.kit.timefmt import format_rfc3339

# Longer user agents are cut to this (the limit evidence.user_agent has on capture).
MAX_USER_AGENT = 1024


@dataclass(frozen=True, slots=True)
class MintedForm:
    token: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenForm:
    """A form whose link verified, with what its page shows."""

    claims: FormClaims
    form: HostedForm
    organization_name: str
    sender_number: str


@dataclass(frozen=True, slots=True)
class Submission:
    """What the browser sent and saw, for the evidence."""

    ip_address: str | None
    user_agent: str | None
    form_url: str
    rendered_agreement_sha256: str


@dataclass(frozen=True, slots=True)
class SubmitResult:
    recorded: bool
    """False: the form had been submitted before; nothing changed."""
    submitted_at: datetime | None


def form_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/consent/{token}"


async def mint(
    session: AsyncSession,
    caller: Caller,
    request: HostedFormRequest,
    *,
    secret: bytes,
    public_base_url: str,
) -> MintedForm:
    """A signed link to a form for one contact of one of the caller's sender numbers.

    Each call mints a new form (its own token id). NotFound when the sender number
    is not the caller's organization's.
    """
    repo = HostedFormRepository(session)
    if await repo.phone_number(caller.org_id, request.phone_number_id) is None:
        raise NotFound()
    # JWT times are whole seconds: expires_at says exactly what the token says.
    issued_at = utcnow().replace(microsecond=0)
    claims = FormClaims(
        org=caller.org_id,
        phone_number_id=request.phone_number_id,
        contact_number=request.contact_number,
        agreement_sha256=agreement_digest(request.agreement_text),
        token_id=new_id(),
        issued_at=issued_at,
        expires_at=issued_at + timedelta(seconds=request.expires_in),
    )
    await repo.add(
        HostedForm(
            org_id=claims.org,
            id=claims.token_id,
            phone_number_id=claims.phone_number_id,
            contact_number=claims.contact_number,
            agreement_text=request.agreement_text,
            agreement_sha256=claims.agreement_sha256,
            api_key_id=caller.key_id,
            created_at=issued_at,
            expires_at=claims.expires_at,
        )
    )
    token = sign(claims, secret)
    return MintedForm(token, form_url(public_base_url, token), claims.expires_at)


async def open_form(session: AsyncSession, token: str, *, secret: bytes) -> OpenForm:
    """The form a link opens. InvalidLink (400) for a malformed or tampered token,
    or one whose claims disagree with the form minted; ExpiredLink (410);
    UnknownLink (404) when its organization has no such form or no longer owns
    the sender number."""
    claims = verify(token, secret, utcnow())
    repo = HostedFormRepository(session)
    form = await repo.get(claims.org, claims.token_id)
    if form is None:
        raise UnknownLink
    bound = (form.phone_number_id, form.contact_number, form.agreement_sha256)
    if bound != (claims.phone_number_id, claims.contact_number, claims.agreement_sha256):
        raise InvalidLink
    number = await repo.phone_number(claims.org, form.phone_number_id)
    name = await repo.organization_name(claims.org)
    if number is None or name is None:
        raise UnknownLink
    return OpenForm(claims, form, name, number.number)


async def submit(session: AsyncSession, opened: OpenForm, visit: Submission) -> SubmitResult:
    """Opt the contact in (method and source ``hosted_form``) with the visit's evidence.

    Exactly once per form, even when submits race: every other submit changes
    nothing and returns ``recorded=False``. UnknownLink when the organization no
    longer owns the sender number (nothing is recorded).
    """
    org, form = opened.claims.org, opened.form
    repo = HostedFormRepository(session)
    now = utcnow()
    if not await repo.claim_submission(org, form.id, now):
        return SubmitResult(recorded=False, submitted_at=await repo.submitted_at(org, form.id))
    evidence: dict[str, Any] = {
        "captured_at": format_rfc3339(now),
        "consent_method": "hosted_form",
        "agreement_text": form.agreement_text,
        "agreement_sha256": form.agreement_sha256,
        "rendered_agreement_sha256": visit.rendered_agreement_sha256,
        "form_url": visit.form_url,
        "token_id": str(form.id),
    }
    if visit.ip_address is not None:
        evidence["ip_address"] = visit.ip_address
    if visit.user_agent:
        evidence["user_agent"] = visit.user_agent[:MAX_USER_AGENT]
    change = ConsentChange(
        phone_number_id=form.phone_number_id,
        contact_number=form.contact_number,
        opted_in=True,
        occurred_at=now,
        consent_method="hosted_form",
        source="hosted_form",
        reason="hosted_form:submit",
        evidence=evidence,
        actor={"type": "contact", "contact_number": form.contact_number, "token_id": str(form.id)},
        # The contact's own, present act: it may follow an opt-out.
        refuse_stale=False,
    )
    result = await record_changes(session, org, [(0, change)])
    if result.rejected:
        # The sender number left the organization between open_form and now.
        raise UnknownLink
    await repo.link_event(org, form.id, result.accepted[0].event_id)
    return SubmitResult(recorded=True, submitted_at=now)
