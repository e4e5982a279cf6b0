"""Applying deactivations: opt-ins older than a number's deactivation become opt-outs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final

from pydantic_core import PydanticCustomError
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.consent.repository import ConsentRepository
from agentmessage.kit.timefmt import parse_client_time

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Deactivation:
    """A carrier's word that ``number`` was deactivated at ``deactivated_at``."""

    number: str
    deactivated_at: datetime
    # Where the word came from (file and line, or the API request), kept on the event.
    evidence: dict[str, Any]


NOT_A_DEACTIVATION_TIME: Final = "must be a date (2026-04-20) or an RFC 3339 date-time"


def parse_deactivated_at(value: str) -> datetime:
    """An RFC 3339 time, or a date: then the end of that day (UTC). Either is a
    time a client sends (``parse_client_time``): on or after 1992-01-01, in range.

    A date leaves the hour open; taking its end opts out consent captured that day,
    which could only have come from the previous owner. Raises a pydantic error (a
    ValueError) whose message says what is wrong, for ``details`` or a rejects file.
    """
    value = value.strip()
    if _DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:  # 2026-02-30
            raise PydanticCustomError("deactivated_at", NOT_A_DEACTIVATION_TIME) from None
        return parse_client_time(datetime.combine(day, time.max, tzinfo=UTC))
    try:
        return parse_client_time(value)
    except PydanticCustomError as exc:
        if exc.type != "rfc3339":
            raise  # a time, but before 1992 or out of range: that is what to say
        raise PydanticCustomError("deactivated_at", NOT_A_DEACTIVATION_TIME) from None


async def apply_deactivations(
    session: AsyncSession,
    org: OrgScope,
    deactivations: Sequence[Deactivation],
    actor: dict[str, Any],
) -> int:
    """Opt out every opted-in record of these numbers (any sender number of the
    organization) whose latest opt-in is older than the number's deactivation.

    Source ``system``, method unchanged, reason ``number_deactivated``. Idempotent:
    an opted-out record, or one opted in after the deactivation, is left alone.
    Returns how many records were opted out. Flushes, never commits.
    """
    latest: dict[str, Deactivation] = {}
    for deactivation in deactivations:
        known = latest.get(deactivation.number)
        if known is None or deactivation.deactivated_at > known.deactivated_at:
            latest[deactivation.number] = deactivation
    if not latest:
        return 0
    records = await ConsentRepository(session).opted_in_states(org, list(latest))
    changes: list[tuple[int, ConsentChange]] = []
    for state in records:
        deactivation = latest[state.contact_number]
        if state.opted_in_at is None or state.opted_in_at >= deactivation.deactivated_at:
            continue
        changes.append(
            (
                len(changes),
                ConsentChange(
                    phone_number_id=state.phone_number_id,
                    contact_number=state.contact_number,
                    opted_in=False,
                    occurred_at=deactivation.deactivated_at,
                    consent_method=None,
                    source="system",
                    reason="number_deactivated",
                    evidence=deactivation.evidence,
                    actor=actor,
                ),
            )
        )
    result = await record_changes(session, org, changes)
    return len(result.accepted)
