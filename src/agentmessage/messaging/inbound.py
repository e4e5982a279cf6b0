"""Inbound SMS: one code path for the Twilio webhook and the sandbox.

Every inbound message is stored (the inbox: a provider's message id is unique, so
a retried webhook is handled once). Then the reply is read as a keyword (SPEC.md
"Keywords on any inbound SMS"): STOP and its kin opt the contact out of the
number they texted and queue one confirmation; START/UNSTOP opt back in; HELP/INFO
get the organization's help text; YES/Y/CONFIRM confirm an open double opt-in
challenge. Anything else is only stored.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository, ContactKey
from agentmessage.db.models import Message, Organization, PhoneNumber
from agentmessage.kit.ids import new_id
from agentmessage.kit.phone import e164_problem, masked
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.messaging import double_opt_in, service
from agentmessage.messaging.keywords import Keyword, KeywordKind, keyword_of
from agentmessage.messaging.repository import (
    ChallengeRepository,
    MessageRepository,
    ProviderLookups,
)
from agentmessage.messaging.reviews import flag_for_review
from agentmessage.messaging.revocation import classify
from agentmessage.messaging.schemas import InboundAction
from agentmessage.orgs import confirmation as opt_out_text
from agentmessage.revocations.clock import CONFIRMATION_WINDOW

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS as a provider reported it."""

    provider: str
    provider_message_id: str
    from_number: str
    to_number: str
    body: str
    received_at: datetime


@dataclass(slots=True)
class InboundOutcome:
    message: Message
    action: InboundAction
    keyword: str | None = None
    consent_id: uuid.UUID | None = None
    replies: list[Message] = field(default_factory=list)
    # The revocation rule that read a reply in the contact's own words.
    rule: str | None = None


async def receive_from_provider(session: AsyncSession, sms: InboundSms) -> InboundOutcome | None:
    """A provider's webhook: the number texted names the organization. None (nothing
    stored) when the numbers are not E.164 or no organization has the number."""
    if e164_problem(sms.from_number) or e164_problem(sms.to_number):
        log.warning("inbound SMS ignored: numbers are not E.164")
        return None
    registrations = await ProviderLookups(session).sender_numbers(sms.to_number)
    if not registrations:
        log.warning("inbound SMS to %s ignored: no organization has it", masked(sms.to_number))
        return None
    if len(registrations) > 1:
        # One number belongs to one provider account; if several organizations
        # registered it here, the first registration receives its replies.
        log.warning("%s is registered by several organizations", masked(sms.to_number))
    sender = registrations[0]
    # The provider's signature vouched for the request; the number names the org.
    return await receive(session, OrgScope(sender.org_id), sender, sms)


async def receive(
    session: AsyncSession, org: OrgScope, sender: PhoneNumber, sms: InboundSms
) -> InboundOutcome:
    """Store the SMS the contact sent to ``sender`` and act on its keyword.

    Handled once: a provider message id seen before changes nothing
    (``action="duplicate"``).
    """
    repo = MessageRepository(session)
    message = Message(
        org_id=org,
        id=new_id(),
        direction="inbound",
        purpose="reply",
        phone_number_id=sender.id,
        from_number=sms.from_number,
        to_number=sms.to_number,
        body=sms.body,
        status="received",
        error_code=None,
        provider=sms.provider,
        provider_message_id=sms.provider_message_id,
        attempts=0,
        next_attempt_at=None,
        locked_until=None,
        created_at=sms.received_at,
        updated_at=sms.received_at,
    )
    if not await repo.add_unless_known(message):
        known = await repo.by_provider_id(org, sms.provider, sms.provider_message_id)
        assert known is not None
        return InboundOutcome(known, "duplicate")
    keyword = keyword_of(sms.body)
    if keyword is None:
        # Not a keyword: maybe "stop texting me" in the contact's own words.
        verdict = classify(sms.body)
        if verdict.kind == "revoke" and verdict.rule is not None:
            outcome = await _opt_out_or_in(
                session, org, sender, message, opted_in=False, reason=verdict.rule
            )
            outcome.rule = verdict.rule
            return outcome
        if verdict.kind == "review" and verdict.rule is not None:
            await flag_for_review(session, org, sender, message, verdict.rule)
            return InboundOutcome(message, "possible_revocation", rule=verdict.rule)
        return InboundOutcome(message, "stored")
    handler = _HANDLERS[keyword.kind]
    outcome = await handler(session, org, sender, message, keyword)
    outcome.keyword = keyword.word
    return outcome


def _opt_in_confirmation(program: str) -> str:
    return (
        f"{program}: you are resubscribed to messages from this number. Msg frequency "
        "varies. Msg & data rates may apply. Reply HELP for help, STOP to opt out."
    )


async def _keyword_opt_out_or_in(
    session: AsyncSession,
    org: OrgScope,
    sender: PhoneNumber,
    reply: Message,
    keyword: Keyword,
) -> InboundOutcome:
    return await _opt_out_or_in(
        session,
        org,
        sender,
        reply,
        opted_in=keyword.kind is KeywordKind.OPT_IN,
        reason=f"keyword:{keyword.word}",
        keyword=keyword.word,
    )


async def _opt_out_or_in(
    session: AsyncSession,
    org: OrgScope,
    sender: PhoneNumber,
    reply: Message,
    *,
    opted_in: bool,
    reason: str,
    keyword: str | None = None,
) -> InboundOutcome:
    """STOP and its kin (or a revocation in the contact's own words) opt out of
    this number (cancelling open challenges), START/UNSTOP opt back in (the
    contact's own written request): the record is created if none, and one
    confirmation is queued. Already so: nothing more."""
    key = ContactKey(sender.id, reply.from_number)
    if not opted_in:
        # Locks in the order a YES takes them (its challenge, then the record), or
        # a STOP and a YES arriving together deadlock on PostgreSQL and one is lost.
        await ChallengeRepository(session).open_of(
            org, sender.id, reply.from_number, for_update=True
        )
    state = (await ConsentRepository(session).lock_states(org, [key])).get(key)
    if state is not None and state.opted_in == opted_in:
        already: InboundAction = "already_opted_in" if opted_in else "already_opted_out"
        return InboundOutcome(reply, already, consent_id=state.id)
    change = ConsentChange(
        phone_number_id=sender.id,
        contact_number=reply.from_number,
        opted_in=opted_in,
        occurred_at=reply.created_at,
        consent_method="sms_keyword",
        source="sms",
        reason=reason,
        evidence={
            "consent_method": "sms_keyword",
            "captured_at": format_rfc3339(reply.created_at),
            **({"keyword": keyword} if keyword else {"rule": reason}),
            "inbound_message_id": str(reply.id),
            "reply_text": reply.body,
            "replied_at": format_rfc3339(reply.created_at),
        },
        actor=double_opt_in.contact_actor(reply),
        refuse_stale=False,
    )
    (accepted,) = (await record_changes(session, org, [(0, change)])).accepted
    if not opted_in:
        await ChallengeRepository(session).cancel_open(
            org, sender.id, reply.from_number, reply.created_at
        )
    organization = await _organization(session, org)
    program = organization.name
    confirmation = await service.enqueue(
        session,
        org,
        sender,
        reply.from_number,
        _opt_in_confirmation(program)
        if opted_in
        else organization.opt_out_confirmation or opt_out_text.default(program),
        "opt_in_confirmation" if opted_in else "opt_out_confirmation",
        # At most one confirmation after an opt-out, within 5 minutes or never.
        send_by=None if opted_in else reply.created_at + CONFIRMATION_WINDOW,
    )
    return InboundOutcome(
        reply,
        "opted_in" if opted_in else "opted_out",
        consent_id=accepted.record.id,
        replies=_some(confirmation),
    )


async def _help(
    session: AsyncSession, org: OrgScope, sender: PhoneNumber, reply: Message, keyword: Keyword
) -> InboundOutcome:
    """Reply with the organization's help text (not to an opted-out contact: after
    STOP, the confirmation is the last message they get from this number)."""
    organization = await _organization(session, org)
    text = organization.help_text or default_help_text(organization.name)
    answer = await service.enqueue(session, org, sender, reply.from_number, text, "help")
    return InboundOutcome(reply, "help", replies=_some(answer))


async def _confirm(
    session: AsyncSession, org: OrgScope, sender: PhoneNumber, reply: Message, keyword: Keyword
) -> InboundOutcome:
    confirmation = await double_opt_in.confirm(session, org, sender, reply, keyword.word)
    return InboundOutcome(reply, confirmation.action, consent_id=confirmation.consent_id)


_HANDLERS: Final = {
    KeywordKind.OPT_OUT: _keyword_opt_out_or_in,
    KeywordKind.OPT_IN: _keyword_opt_out_or_in,
    KeywordKind.HELP: _help,
    KeywordKind.CONFIRM: _confirm,
}


def default_help_text(program: str) -> str:
    return (
        f"{program}: you get text messages from {program} on this number. Msg frequency "
        "varies. Msg & data rates may apply. Reply STOP to opt out, START to opt back in."
    )


async def _organization(session: AsyncSession, org: OrgScope) -> Organization:
    organization = await MessageRepository(session).organization(org)
    assert organization is not None  # the sender number's organization
    return organization


def _some(message: Message | None) -> list[Message]:
    return [message] if message is not None else []
