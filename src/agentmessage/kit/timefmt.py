"""RFC 3339 parsing and formatting: UTC, with a ``Z``; and the one type of a time a
client sends (``ClientTime``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")
_ZERO = timedelta(0)

EARLIEST_CLIENT_TIME: Final = datetime(1992, 1, 1, tzinfo=UTC)
"""No time a client sends may lie before this: the FCC's TCPA rules took effect
on 1992-01-01, so no consent, revocation or deactivation this service records can
be older, and an older time is a typo or a placeholder (1900-01-01, 0001-01-01)."""
TOO_EARLY: Final = "must be an RFC 3339 time on or after 1992-01-01"
TOO_LATE: Final = "is out of range: later than 9999-12-31T23:59:59Z"
_BEFORE_YEAR_ONE: Final = "is out of range: earlier than 0001-01-01T00:00:00Z"


def format_rfc3339(value: datetime) -> str:
    """``2026-04-26T12:00:00Z``; microseconds only when there are any."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    # isoformat (in C) writes microseconds only when there are any, as wanted.
    return value.replace(tzinfo=None).isoformat() + "Z"


def parse_rfc3339(value: object) -> datetime:
    """A timezone-aware UTC datetime from an RFC 3339 string, or a pydantic error
    (a ValueError): malformed, or out of range once converted to UTC."""
    return _in_utc(_with_offset(value))


def parse_client_time(value: object) -> datetime:
    """A time a client sends, in UTC: RFC 3339 with an offset, on or after
    ``EARLIEST_CLIENT_TIME``, and still a time once converted to UTC. A pydantic
    error (a ValueError) otherwise, its message fit for ``details``."""
    # Compared as sent: an aware comparison never converts, so a time whose offset
    # would take it before year 1 is "too early", not an overflow.
    at = _with_offset(value)
    if at < EARLIEST_CLIENT_TIME:
        raise PydanticCustomError("time_too_early", TOO_EARLY)
    return _in_utc(at)


def _with_offset(value: object) -> datetime:
    """The datetime as sent, offset and all (not yet converted to UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PydanticCustomError("rfc3339", "must be an RFC 3339 date-time with a timezone")
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 date-time such as 2026-04-26T12:00:00Z"
        )
    text = value.upper().replace(" ", "T")
    if "." in text:
        # Python keeps microseconds only: cut nanoseconds rather than refuse them.
        text = _BEYOND_MICROSECONDS.sub(r"\1", text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError("rfc3339", "is not a valid date-time") from None


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:30:00+01:00 or 9999-12-31T23:00:00-05:00: a valid text whose
        # offset takes it outside the years 1..9999 in UTC.
        side = _BEFORE_YEAR_ONE if value.year == 1 else TOO_LATE
        raise PydanticCustomError("time_out_of_range", side) from None


RFC3339 = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    PlainSerializer(format_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timestamp of this service's own (responses, cursors): RFC 3339 in, UTC ``Z``
out. A time a client sends is a ``ClientTime``."""


ClientTime = Annotated[
    datetime,
    BeforeValidator(parse_client_time),
    PlainSerializer(format_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time a client sends (a body field, a query parameter, a file's cell): RFC 3339
with an offset, on or after 1992-01-01T00:00:00Z (``EARLIEST_CLIENT_TIME``), in
range once in UTC; UTC ``Z`` out. Every request schema takes times as this type."""
