"""The deactivation time type: an RFC 3339 time, or a date meaning its end (UTC), on
or after 1992-01-01 like every time a client sends."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from agentmessage.deactivations.service import parse_deactivated_at


def _parse(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("deactivated_at", "must be a date or an RFC 3339 date-time")
    return parse_deactivated_at(value)


DeactivatedAt = Annotated[
    datetime,
    BeforeValidator(_parse),
    WithJsonSchema(
        {
            "type": "string",
            "description": "RFC 3339 date-time, or a date (then the end of that day, UTC); "
            "on or after 1992-01-01",
            "examples": ["2026-04-20", "2026-04-20T08:30:00Z"],
        }
    ),
]
