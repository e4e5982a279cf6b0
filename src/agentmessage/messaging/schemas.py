"""Request and response shapes: double opt-in (seed 002), messages, the sandbox."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from agentmessage.consent.schemas import AgreementText, not_blank
from agentmessage.kit.phone import E164
from agentmessage.kit.timefmt import RFC3339

MAX_BODY: Final = 1600
"""Twilio's limit for one message body (it is sent in up to 10 segments)."""

# What a confirmation text must tell the contact (SPEC.md "Double opt-in").
REQUIRED_WORDS: Final = ("YES", "STOP", "HELP")

_SEED_AGREEMENT = (
    "By replying YES you agree to receive appointment reminders from Agentmessage. "
    "Msg & data rates may apply. Reply STOP to opt out."
)
_SEED_CONFIRMATION = (
    "Reply YES to confirm you'd like to receive appointment reminders. "
    "Reply STOP to opt out, HELP for help."
)
SEED_RESULT: Final[dict[str, Any]] = {
    "consent_pending_id": "0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b4",
    "confirmation_message_id": "0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b5",
    "expires_at": "2026-04-27T12:00:00Z",
    "reused": False,
    "already_opted_in": False,
}


def missing_words(text: str) -> list[str]:
    """Which of YES, STOP, HELP the text does not contain as words (any case)."""
    return [w for w in REQUIRED_WORDS if not re.search(rf"\b{w}\b", text, re.IGNORECASE)]


def _tells_the_keywords(value: str) -> str:
    not_blank(value)
    missing = missing_words(value)
    if missing:
        raise PydanticCustomError(
            "confirmation_keywords",
            "must tell the contact to reply YES to confirm, STOP to opt out and HELP for "
            "help; missing: {missing}",
            {"missing": ", ".join(missing)},
        )
    return value


ConfirmationText = Annotated[
    str, Field(min_length=1, max_length=MAX_BODY), AfterValidator(_tells_the_keywords)
]


class DoubleOptInRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
                    "contact_number": "+15554443333",
                    "confirmation_text": _SEED_CONFIRMATION,
                    "agreement_text": _SEED_AGREEMENT,
                }
            ]
        },
    )

    phone_number_id: uuid.UUID = Field(description="Your sender number the SMS comes from.")
    contact_number: E164
    agreement_text: AgreementText = Field(
        description="What the contact agrees to by replying YES; kept as evidence."
    )
    confirmation_text: ConfirmationText | None = Field(
        default=None,
        description=(
            "The SMS sent (1..1600 characters). It must contain the words YES, STOP and "
            "HELP. Default: a CTIA-compliant text naming your organization, e.g. 'Demo "
            "Dental: reply YES to confirm you want text messages from Demo Dental. Msg "
            "frequency varies. Msg & data rates may apply. Reply HELP for help, STOP to "
            "opt out.'"
        ),
    )


class DoubleOptInResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SEED_RESULT]})

    consent_pending_id: uuid.UUID | None = Field(
        description="The open challenge; null when the contact is already opted in."
    )
    confirmation_message_id: uuid.UUID | None = Field(
        description="The challenge SMS (GET /v1/messages/{id}); null when already opted in."
    )
    expires_at: RFC3339 | None = Field(description="24 hours after the challenge started.")
    reused: bool = Field(description="An open challenge existed: no second SMS was sent.")
    already_opted_in: bool = Field(description="The contact is opted in: no SMS was sent.")


MessageStatus = Literal[
    "queued", "sending", "sent", "delivered", "failed", "skipped_late", "received"
]


class MessageOut(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b5",
                    "direction": "outbound",
                    "from": "+15550100001",
                    "to": "+15554443333",
                    "body": _SEED_CONFIRMATION,
                    "status": "delivered",
                    "error_code": None,
                    "created_at": "2026-04-26T12:00:00Z",
                    "updated_at": "2026-04-26T12:00:02Z",
                }
            ]
        },
    )

    id: uuid.UUID
    direction: Literal["outbound", "inbound"]
    from_: str = Field(alias="from")
    to: str
    body: str
    status: MessageStatus = Field(
        description="outbound: queued -> sending -> sent -> delivered | failed, or "
        "skipped_late (an opt-out confirmation that could not go within 5 minutes is "
        "never sent late); inbound: received."
    )
    error_code: str | None = Field(
        description="Why it failed: the provider's error code (Twilio's '21211'), or "
        "'contact_opted_out', 'provider_unreachable', 'outcome_unknown'."
    )
    created_at: RFC3339
    updated_at: RFC3339


Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY)]


class SandboxInboundRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [{"from": "+15554443333", "to": "+15550100001", "body": " yes! "}]
        },
    )

    from_: E164 = Field(alias="from", description="The contact texting in.")
    to: E164 = Field(description="One of your sender numbers.")
    body: Body


InboundAction = Literal[
    "stored",
    "duplicate",
    "double_opt_in_confirmed",
    "challenge_expired",
    "no_open_challenge",
    "opted_out",
    "already_opted_out",
    "opted_in",
    "already_opted_in",
    "help",
    "possible_revocation",
]


class SandboxInboundResult(BaseModel):
    message: MessageOut = Field(description="The inbound message as stored.")
    action: InboundAction = Field(description="What the reply did.")
    keyword: str | None = Field(
        description="The normalized keyword the reply was (STOP, YES, ...), else null."
    )
    consent_id: uuid.UUID | None = Field(
        description="The consent record the reply changed, else null."
    )
    rule: str | None = Field(
        default=None,
        description="For a reply in the contact's own words: the revocation rule that "
        "read it (phrase:...) or the word that queued it for review (review:...).",
    )
    replies: list[MessageOut] = Field(description="SMS queued in answer (confirmation, help).")
