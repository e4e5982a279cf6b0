"""``POST /v1/consent/revocations``: a revocation received outside SMS."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from agentmessage.consent.schemas import MAX_CLOCK_SKEW
from agentmessage.kit.clock import utcnow
from agentmessage.kit.phone import E164
from agentmessage.kit.timefmt import ClientTime

Channel = Literal["email", "voice", "web", "in_person", "agent", "other"]


class RevocationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contact_number": "+15554443333",
                    "channel": "email",
                    "received_at": "2026-04-26T12:00:00Z",
                    "text": "Please stop texting me.",
                }
            ]
        },
    )

    contact_number: E164
    phone_number_id: uuid.UUID | None = Field(
        default=None, description="One sender number; absent: every number of the organization."
    )
    channel: Channel = Field(description="How the contact told you.")
    received_at: ClientTime = Field(
        description="When you received it: on or after 1992-01-01, not in the future."
    )
    text: str | None = Field(default=None, max_length=4000, description="Their words, if any.")

    @field_validator("received_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        # The same tolerance for clock skew as evidence's captured_at.
        if value > utcnow() + MAX_CLOCK_SKEW:
            raise PydanticCustomError("future", "must not be in the future")
        return value
