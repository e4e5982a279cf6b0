"""Attested capture through the API: ``POST /v1/consent`` is a batch of one,
``POST /v1/consent/bulk`` a batch of up to 1000, both through ``record_changes``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller
from agentmessage.consent.changes import BatchResult, ConsentChange, Rejection, record_changes
from agentmessage.consent.schemas import ConsentCapture, parse_capture
from agentmessage.kit.errors import PlanRequired, ValidationFailed
from agentmessage.orgs.plans import PLAN_REQUIRED_MESSAGE, PLANS


def ensure_plan_allows(caller: Caller, captures: Iterable[ConsentCapture | Any]) -> None:
    """Attested opt-in capture is plan-gated; recording an opt-out never is.

    Takes validated captures or raw bulk records (a record asking for an opt-in
    gates the whole call, valid or not, so the answer does not depend on typos).
    """
    if PLANS[caller.plan].attested_capture:
        return
    for capture in captures:
        opted_in = (
            capture.opted_in
            if isinstance(capture, ConsentCapture)
            else (isinstance(capture, dict) and capture.get("opted_in") is True)
        )
        if opted_in:
            raise PlanRequired(PLAN_REQUIRED_MESSAGE)


def change_of(
    capture: ConsentCapture, actor: dict[str, Any], reason: str = "api:capture"
) -> ConsentChange:
    """The consent change an attested capture asks for (API or import)."""
    return ConsentChange(
        phone_number_id=capture.phone_number_id,
        contact_number=capture.contact_number,
        opted_in=capture.opted_in,
        occurred_at=capture.evidence.captured_at,
        consent_method=capture.evidence.consent_method,
        source="api",
        reason=reason,
        evidence=capture.evidence.as_received,
        actor=actor,
    )


async def capture_records(
    session: AsyncSession, caller: Caller, records: Sequence[Any]
) -> BatchResult:
    """Validate raw records one by one with the single endpoint's validator, then
    capture the valid ones in one batch. Raises PlanRequired when any record asks
    for an opt-in on a plan without attested capture (opt-outs are never gated)."""
    ensure_plan_allows(caller, records)
    valid: list[tuple[int, ConsentChange]] = []
    invalid: list[Rejection] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            invalid.append(Rejection(index, "VALIDATION_FAILED", {"record": "must be an object"}))
            continue
        try:
            valid.append((index, change_of(parse_capture(record), caller.actor)))
        except ValidationFailed as exc:
            invalid.append(Rejection(index, "VALIDATION_FAILED", exc.details or {}))
    result = await record_changes(session, caller.org_id, valid)
    result.rejected = sorted(invalid + result.rejected, key=lambda r: r.index)
    return result
