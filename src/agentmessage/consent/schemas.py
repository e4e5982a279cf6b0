"""Consent request and response shapes, and the one validator of a capture.

``ConsentCapture`` holds every rule of a consent record (SPEC.md "Records"). The
single endpoint, bulk, imports and every flow validate through it: a rule written
twice drifts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import ValidationFailed, details_from_errors
from agentmessage.kit.phone import E164
from agentmessage.kit.text import is_blank
from agentmessage.kit.timefmt import RFC3339, ClientTime

ConsentMethod = Literal[
    "checkbox", "sms_keyword", "written", "verbal", "attested", "double_opt_in", "hosted_form"
]
CONSENT_METHODS: Final = get_args(ConsentMethod)
Source = Literal["api", "sms", "hosted_form", "system"]
EventType = Literal["opt_in", "opt_out"]

# Methods only this service's own flows may record, and where to go instead.
FLOW_ONLY_METHODS: Final = {
    "double_opt_in": "POST /v1/consent/double-opt-in",
    "hosted_form": "POST /v1/consent/hosted",
}
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)

STRICT = ConfigDict(extra="forbid", str_strip_whitespace=False)


def not_blank(value: str) -> str:
    """The value unchanged, or a pydantic error when it shows nothing (``is_blank``)."""
    if is_blank(value):
        raise PydanticCustomError("blank", "must not be blank")
    return value


AgreementText = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(not_blank)]
"""The text the contact agreed to: 1..4000 characters, at least one of them visible
(zero-width and filler characters alone are blank). One rule for captures, hosted
forms and double opt-in; kept exactly as received."""


class Evidence(BaseModel):
    """How and when the contact consented, as the caller attests it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "captured_at": "2026-04-26T12:00:00Z",
                    "ip_address": "203.0.113.42",
                    "user_agent": "Mozilla/5.0",
                    "agreement_text": "By signing up you agree to receive appointment "
                    "reminders. Reply STOP to opt out.",
                    "form_url": "https://example.com/signup",
                    "consent_method": "checkbox",
                }
            ]
        },
    )

    captured_at: ClientTime = Field(
        description="When consent was given: on or after 1992-01-01, at most 5 minutes ahead."
    )
    consent_method: ConsentMethod
    agreement_text: AgreementText
    ip_address: str | None = Field(default=None, description="IPv4 or IPv6 address.")
    user_agent: Annotated[str, Field(max_length=1024)] | None = None
    form_url: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="http or https URL of the form the contact filled in."
    )

    # The evidence exactly as received: what is stored, never rewritten.
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Evidence:
        evidence: Evidence = handler(data)
        evidence._raw = dict(data) if isinstance(data, dict) else evidence.model_dump(mode="json")
        return evidence

    @property
    def as_received(self) -> dict[str, Any]:
        # Straight from the private store: pydantic's attribute lookup costs more
        # than the copy (this runs once per captured record, imports included).
        private = self.__pydantic_private__
        return dict(private["_raw"] if private else self._raw)

    @field_validator("captured_at")
    @classmethod
    def _not_in_future(cls, value: datetime) -> datetime:
        if value > utcnow() + MAX_CLOCK_SKEW:
            raise PydanticCustomError("future", "must not be more than 5 minutes in the future")
        return value

    @field_validator("consent_method")
    @classmethod
    def _not_flow_only(cls, value: str) -> str:
        if value in FLOW_ONLY_METHODS:
            raise PydanticCustomError(
                "flow_only",
                "{method} is recorded only by this service's own flow; use {endpoint}",
                {"method": value, "endpoint": FLOW_ONLY_METHODS[value]},
            )
        return value

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            # The C parser accepts only plain dotted quads, all of which ipaddress
            # accepts too; anything else (IPv6 included) goes to ipaddress.
            socket.inet_pton(socket.AF_INET, value)
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise PydanticCustomError("ip", "must be a valid IP address") from None
        return value

    @field_validator("form_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("url", "must be an http or https URL")
        return value


class ConsentCapture(BaseModel):
    """An attested consent (or opt-out) for one contact of one sender number."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
                    "contact_number": "+15554443333",
                    "opted_in": True,
                    "evidence": Evidence.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                }
            ]
        },
    )

    phone_number_id: uuid.UUID
    contact_number: E164
    opted_in: StrictBool
    evidence: Evidence


def parse_capture(data: Any, *, prefix: str = "") -> ConsentCapture:
    """Validate one capture; ValidationFailed with ``details`` keyed by field path.

    ``prefix`` names where the record sits in a larger body (``records[3]``).
    """
    try:
        return ConsentCapture.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(details=details_from_errors(exc.errors(), prefix=prefix)) from None


MAX_BULK_RECORDS: Final = 1000

_SEED_004_RECORDS: list[JsonValue] = [
    {
        "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
        "contact_number": "+15554443333",
        "opted_in": True,
        "evidence": {
            "captured_at": "2026-04-26T12:00:00Z",
            "ip_address": "203.0.113.42",
            "user_agent": "Mozilla/5.0",
            "agreement_text": "By signing up you agree to receive appointment reminders. "
            "Reply STOP to opt out.",
            "form_url": "https://example.com/signup",
            "consent_method": "checkbox",
        },
    },
    {
        "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
        "contact_number": "+15554443334",
        "opted_in": True,
        "evidence": {
            "captured_at": "2026-04-26T12:00:01Z",
            "ip_address": "",
            "user_agent": "Mozilla/5.0",
            "agreement_text": "By signing up you agree to receive appointment reminders. "
            "Reply STOP to opt out.",
            "form_url": "https://example.com/signup",
            "consent_method": "checkbox",
        },
    },
]


class BulkCaptureRequest(BaseModel):
    """Up to 1000 captures. Each record is validated on its own (as POST /v1/consent
    does), so records arrive unvalidated here and one bad record rejects only itself."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"records": _SEED_004_RECORDS}]}
    )

    records: Annotated[
        list[Any],
        Field(min_length=1, max_length=MAX_BULK_RECORDS),
        WithJsonSchema(
            {
                "type": "array",
                # Each record is judged on its own: anything in the array is
                # accepted by the call, and a record that is not a valid
                # ConsentCapture comes back in `rejected` with its reason.
                "items": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ConsentCapture"},
                        {"description": "Anything else: rejected on its own, in `rejected`."},
                    ]
                },
                "minItems": 1,
                "maxItems": MAX_BULK_RECORDS,
            }
        ),
    ]


class BulkRejection(BaseModel):
    index: int = Field(description="Position of the record in the request's records.")
    code: Literal["VALIDATION_FAILED", "NOT_FOUND"]
    reason: str = Field(examples=["evidence.ip_address: must be a valid IP address"])


class BulkCaptureResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "rejected": [
                        {
                            "index": 1,
                            "code": "VALIDATION_FAILED",
                            "reason": "evidence.ip_address: must be a valid IP address",
                        }
                    ],
                }
            ]
        }
    )

    accepted: int
    rejected: list[BulkRejection]


_RECORD_EXAMPLE: Final[JsonDict] = {
    "id": "0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b6",
    "org_id": "0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b4",
    "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
    "contact_number": "+15554443333",
    "opted_in": True,
    "opted_in_at": "2026-04-26T12:00:00Z",
    "opted_out_at": None,
    "source": "api",
    "consent_method": "checkbox",
    "created_at": "2026-04-26T12:00:00Z",
    "updated_at": "2026-04-26T12:00:00Z",
}


def _record_json_schema(schema: JsonDict) -> None:
    # Always sent, but not `required` in the document: the seeds' own record
    # examples (seeds 000 and 001) leave it out, and a client generated from the
    # document must take a record shaped like them.
    required = schema.get("required")
    if isinstance(required, list):
        schema["required"] = [name for name in required if name != "consent_method"]
    schema["examples"] = [_RECORD_EXAMPLE]


class ConsentRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra=_record_json_schema)

    id: uuid.UUID
    org_id: uuid.UUID
    phone_number_id: uuid.UUID
    contact_number: str
    opted_in: bool
    opted_in_at: RFC3339 | None
    opted_out_at: RFC3339 | None
    source: Source
    consent_method: ConsentMethod
    created_at: RFC3339
    updated_at: RFC3339


class ConsentEventOut(BaseModel):
    """One entry of a record's history."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    consent_id: uuid.UUID
    type: EventType
    consent_method: ConsentMethod | None = Field(
        description="The method this event recorded; null when it left the method as it was."
    )
    source: Source
    reason: str = Field(examples=["api:capture", "api:delete", "keyword:STOP"])
    evidence: dict[str, Any] | None = Field(description="Exactly as received.")
    actor: dict[str, Any]
    occurred_at: RFC3339 = Field(description="When it happened (consent given or revoked).")
    created_at: RFC3339 = Field(description="When it was recorded here.")


class ListMeta(BaseModel):
    total: int
    limit: int
    offset: int
    next_cursor: str | None


class HistoryMeta(BaseModel):
    total: int


class ConsentList(BaseModel):
    success: Literal[True] = True
    data: list[ConsentRecordOut]
    meta: ListMeta


class ConsentHistory(BaseModel):
    success: Literal[True] = True
    data: list[ConsentEventOut]
    meta: HistoryMeta
