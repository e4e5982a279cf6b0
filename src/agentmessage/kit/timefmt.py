"""RFC 3339 parsing and formatting: UTC, with a ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")
_ZERO = timedelta(0)


def format_rfc3339(value: datetime) -> str:
    """``2026-04-26T12:00:00Z``; microseconds only when there are any."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    # isoformat (in C) writes microseconds only when there are any, as wanted.
    return value.replace(tzinfo=None).isoformat() + "Z"


def parse_rfc3339(value: object) -> datetime:
    """A timezone-aware datetime from an RFC 3339 string, or a pydantic error."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PydanticCustomError("rfc3339", "must be an RFC 3339 date-time with a timezone")
        return value.astimezone(UTC)
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 date-time such as 2026-04-26T12:00:00Z"
        )
    text = value.upper().replace(" ", "T")
    if "." in text:
        # Python keeps microseconds only: cut nanoseconds rather than refuse them.
        text = _BEYOND_MICROSECONDS.sub(r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError("rfc3339", "is not a valid date-time") from None
    return parsed.astimezone(UTC)


RFC3339 = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    PlainSerializer(format_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""An incoming or outgoing timestamp: RFC 3339 in, UTC ``Z`` out."""
