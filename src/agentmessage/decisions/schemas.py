"""``POST /v1/consent/check``: may I text these contacts from this number?"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmessage.consent.schemas import ConsentMethod
from agentmessage.kit.timefmt import RFC3339, ClientTime

Reason = Literal[
    "opted_in",
    "opted_out",
    "no_consent",
    "pending_confirmation",
    "number_deactivated",
    "invalid_number",
]


class CheckRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
                    "contact_numbers": ["+15554443333", "+15554443334"],
                }
            ]
        },
    )

    phone_number_id: uuid.UUID = Field(
        description="The sender number the messages would come from."
    )
    contact_numbers: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=1000,
        description="1 to 1000 contacts. One that is not E.164 is answered invalid_number.",
    )
    at: ClientTime | None = Field(
        default=None,
        description="Answer as of this moment, from history (default: now).",
    )


class CheckResult(BaseModel):
    contact_number: str
    allowed: bool
    reason: Reason
    consent_id: uuid.UUID | None
    opted_in_at: RFC3339 | None
    opted_out_at: RFC3339 | None
    consent_method: ConsentMethod | None


class Decision(BaseModel):
    """A stored answer: ``GET /v1/consent/decisions/{id}`` returns it again."""

    decision_id: uuid.UUID
    checked_at: RFC3339
    phone_number_id: uuid.UUID
    at: RFC3339 | None
    results: list[CheckResult]
