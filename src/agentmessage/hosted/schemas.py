"""Request and response shapes of ``POST /v1/consent/hosted`` (seed 003)."""

from __future__ import annotations

import uuid
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from agentmessage.consent.schemas import AgreementText
from agentmessage.kit.phone import E164
from agentmessage.kit.timefmt import RFC3339

DEFAULT_EXPIRES_IN: Final = 3600

_SEED_AGREEMENT = (
    "By submitting this form you agree to receive appointment reminders from Agentmessage. "
    "Msg & data rates may apply. Reply STOP to opt out."
)
# Seed 003's (truncated) example token.
_SEED_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJvcmciOiIwMTkw…"  # noqa: S105


class HostedFormRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
                    "contact_number": "+15554443333",
                    "agreement_text": _SEED_AGREEMENT,
                }
            ]
        },
    )

    phone_number_id: uuid.UUID = Field(description="Your sender number the contact agrees to.")
    contact_number: E164
    agreement_text: AgreementText = Field(
        description="Shown to the contact exactly as sent (as text, never markup)."
    )
    expires_in: int = Field(
        default=DEFAULT_EXPIRES_IN,
        ge=60,
        le=86400,
        description="Seconds until the link expires (60..86400, default one hour).",
    )


class HostedFormToken(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": _SEED_TOKEN,
                    "url": f"https://api.agentmsg.io/consent/{_SEED_TOKEN}",
                    "expires_at": "2026-04-27T13:00:00Z",
                }
            ]
        }
    )

    token: str = Field(description="An HS256 JWT; the credential of the public page.")
    url: str = Field(description="The public page to hand to the contact.")
    expires_at: RFC3339
