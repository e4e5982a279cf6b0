"""Attested capture of many records at once: the one write path of every capture.

``POST /v1/consent`` is a batch of one and ``POST /v1/consent/bulk`` a batch of up
to 1000; both go through ``capture_batch``. Every record is judged on its own
(one bad record never rejects the rest), but the writes are batched: one locking
read of the existing records, one INSERT of the new ones, one UPDATE statement
(executemany) of the changed ones, and one INSERT of all history events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import Caller
from agentmessage.consent.repository import ConsentRepository, ConsentState, ContactKey
from agentmessage.consent.schemas import ConsentCapture, parse_capture
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import PlanRequired, ValidationFailed
from agentmessage.kit.ids import new_id
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.orgs.plans import PLAN_REQUIRED_MESSAGE, PLANS

RejectionCode = Literal["VALIDATION_FAILED", "NOT_FOUND"]


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    code: RejectionCode
    details: dict[str, str]

    @property
    def reason(self) -> str:
        """``evidence.ip_address: must be a valid IP address`` (several joined by ``; ``)."""
        return "; ".join(f"{path}: {message}" for path, message in self.details.items())


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    record: ConsentState
    created: bool


@dataclass(slots=True)
class BatchResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


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


class StaleOptIn(Exception):
    """An opt-in whose evidence predates the contact's opt-out."""

    def __init__(self, opted_out_at: datetime) -> None:
        self.opted_out_at = opted_out_at


def apply_capture(
    org_id: uuid.UUID, state: ConsentState | None, capture: ConsentCapture, now: datetime
) -> ConsentState:
    """The record after ``capture``. Raises StaleOptIn rather than let consent given
    before an opt-out undo it."""
    evidence = capture.evidence
    if state is None:
        return ConsentState(
            org_id=org_id,
            id=new_id(),
            phone_number_id=capture.phone_number_id,
            contact_number=capture.contact_number,
            opted_in=capture.opted_in,
            opted_in_at=evidence.captured_at if capture.opted_in else None,
            opted_out_at=None if capture.opted_in else evidence.captured_at,
            source="api",
            consent_method=evidence.consent_method,
            created_at=now,
            updated_at=now,
        )
    if (
        capture.opted_in
        and not state.opted_in
        and state.opted_out_at is not None
        and evidence.captured_at < state.opted_out_at
    ):
        raise StaleOptIn(state.opted_out_at)
    opted_in_at: datetime | None
    opted_out_at: datetime | None
    if capture.opted_in:
        opted_in_at, opted_out_at = evidence.captured_at, None
    else:
        opted_in_at, opted_out_at = state.opted_in_at, evidence.captured_at
    return replace(
        state,
        opted_in=capture.opted_in,
        opted_in_at=opted_in_at,
        opted_out_at=opted_out_at,
        source="api",
        consent_method=evidence.consent_method,
        updated_at=now,
    )


@dataclass(slots=True)
class _Contact:
    """One contact's captures in this batch, folded from its state before it."""

    org_id: uuid.UUID
    items: list[tuple[int, ConsentCapture]]
    before: ConsentState | None = None
    after: ConsentState | None = None
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def fold(self, now: datetime) -> None:
        self.after, self.accepted, self.rejected = self.before, [], []
        for index, capture in self.items:
            try:
                updated = apply_capture(self.org_id, self.after, capture, now)
            except StaleOptIn as stale:
                message = (
                    f"is before the contact opted out at {format_rfc3339(stale.opted_out_at)}; "
                    "consent given before an opt-out cannot restore it"
                )
                self.rejected.append(
                    Rejection(index, "VALIDATION_FAILED", {"evidence.captured_at": message})
                )
                continue
            # The first capture of a contact unknown before this batch creates it.
            created = self.before is None and not self.accepted
            self.after = updated
            self.accepted.append(Accepted(index, updated, created))


async def capture_records(
    session: AsyncSession, caller: Caller, records: Sequence[Any]
) -> BatchResult:
    """Validate raw records one by one with the single endpoint's validator, then
    capture the valid ones in one batch. Raises PlanRequired when any record asks
    for an opt-in on a plan without attested capture (opt-outs are never gated)."""
    ensure_plan_allows(caller, records)
    valid: list[tuple[int, ConsentCapture]] = []
    invalid: list[Rejection] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            invalid.append(Rejection(index, "VALIDATION_FAILED", {"record": "must be an object"}))
            continue
        try:
            valid.append((index, parse_capture(record)))
        except ValidationFailed as exc:
            invalid.append(Rejection(index, "VALIDATION_FAILED", exc.details or {}))
    result = await capture_batch(session, caller, valid)
    result.rejected = sorted(invalid + result.rejected, key=lambda r: r.index)
    return result


async def capture_batch(
    session: AsyncSession, caller: Caller, captures: Sequence[tuple[int, ConsentCapture]]
) -> BatchResult:
    """Apply validated captures (with their index in the request) in order.

    A capture naming a phone number outside the caller's organization is rejected
    NOT_FOUND; an opt-in older than the contact's opt-out VALIDATION_FAILED. Every
    accepted capture appends one history event. The caller checks the plan.
    """
    result = BatchResult()
    repo = ConsentRepository(session)
    org = caller.org_id
    known = await repo.known_phone_numbers(org, {c.phone_number_id for _, c in captures})
    contacts: dict[ContactKey, _Contact] = {}
    for index, capture in captures:
        if capture.phone_number_id not in known:
            result.rejected.append(Rejection(index, "NOT_FOUND", {"phone_number_id": "not found"}))
            continue
        key = ContactKey(capture.phone_number_id, capture.contact_number)
        contacts.setdefault(key, _Contact(org, items=[])).items.append((index, capture))
    if not contacts:
        return result

    now = utcnow()
    existing = await repo.lock_states(org, list(contacts))
    for key, contact in contacts.items():
        contact.before = existing.get(key)
        contact.fold(now)

    fresh = {k: c for k, c in contacts.items() if c.before is None and c.after is not None}
    if fresh:
        inserted = await repo.insert_states([c.after for c in fresh.values() if c.after])
        lost = [key for key, c in fresh.items() if c.after and c.after.id not in inserted]
        if lost:
            # A concurrent request created these contacts first: start from theirs.
            for key, state in (await repo.lock_states(org, lost)).items():
                contacts[key].before = state
                contacts[key].fold(now)

    await repo.update_states(
        org,
        [
            c.after
            for c in contacts.values()
            if c.before is not None and c.after is not None and c.accepted
        ],
    )
    events: list[dict[str, Any]] = []
    for contact in contacts.values():
        result.accepted.extend(contact.accepted)
        result.rejected.extend(contact.rejected)
    result.accepted.sort(key=lambda a: a.index)
    result.rejected.sort(key=lambda r: r.index)
    by_index = dict(captures)
    for accepted in result.accepted:
        capture = by_index[accepted.index]
        events.append(
            {
                "org_id": org,
                "id": new_id(),  # time-ordered: history keeps the request's order
                "consent_id": accepted.record.id,
                "type": "opt_in" if capture.opted_in else "opt_out",
                "consent_method": capture.evidence.consent_method,
                "source": "api",
                "reason": "api:capture",
                "evidence": capture.evidence.as_received,
                "actor": caller.actor,
                "occurred_at": capture.evidence.captured_at,
                "created_at": now,
            }
        )
    await repo.insert_events(events)
    return result
