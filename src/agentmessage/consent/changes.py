"""The one write path of consent state: every capture, flow and reply goes through it.

A ``ConsentChange`` says what happened to one contact (opt-in or opt-out, when,
by which method and channel, with what evidence and by whom). ``record_changes``
applies a batch of them in order: one locking read of the existing records, one
INSERT of the new ones, one UPDATE statement (executemany) of the changed ones,
one INSERT of all history events and one of their leaves in the organization's
proof log, whatever the batch size. Each change is
judged on its own: one rejected change never rejects the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.repository import ConsentRepository, ConsentState, ContactKey
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.proof import log

RejectionCode = Literal["VALIDATION_FAILED", "NOT_FOUND"]


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One opt-in or opt-out of one contact, with everything its history event keeps."""

    phone_number_id: uuid.UUID
    contact_number: str
    opted_in: bool
    occurred_at: datetime
    # None leaves the record's method as it was (DELETE, number deactivation).
    consent_method: str | None
    source: str
    reason: str
    evidence: dict[str, Any] | None
    actor: dict[str, Any]
    # Dated by the caller (an attested capture, a reported revocation), a change
    # may be older than the record's latest opposite one: refused (StaleChange).
    # Changes this service dates itself (a reply, DELETE, a flow) happen now: False.
    refuse_stale: bool = True

    def __reduce__(self) -> tuple[type[ConsentChange], tuple[Any, ...]]:
        # Imports send changes between processes by the thousand: as the values
        # in order, pickled and rebuilt at a fraction of a dataclass's default.
        return ConsentChange, (
            self.phone_number_id,
            self.contact_number,
            self.opted_in,
            self.occurred_at,
            self.consent_method,
            self.source,
            self.reason,
            self.evidence,
            self.actor,
            self.refuse_stale,
        )


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
    event_id: uuid.UUID


@dataclass(slots=True)
class BatchResult:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class StaleChange(Exception):
    """A change dated before the record's latest opposite one: older news that
    would undo newer (consent given before an opt-out, or an opt-out dated before
    the consent it would end), and leave the record's times contradicting its state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def apply_change(
    org_id: uuid.UUID, state: ConsentState | None, change: ConsentChange, now: datetime
) -> ConsentState:
    """The record after ``change``. Raises StaleChange (when the change refuses
    stale ones) rather than let an opt-in given before an opt-out restore consent,
    or an opt-out dated before the opt-in end it."""
    if state is None:
        if change.consent_method is None:
            raise ValueError("a new consent record needs a consent method")
        return ConsentState(
            org_id=org_id,
            id=new_id(),
            phone_number_id=change.phone_number_id,
            contact_number=change.contact_number,
            opted_in=change.opted_in,
            opted_in_at=change.occurred_at if change.opted_in else None,
            opted_out_at=None if change.opted_in else change.occurred_at,
            source=change.source,
            consent_method=change.consent_method,
            created_at=now,
            updated_at=now,
            event_count=0,
            last_leaf_hash=None,
        )
    if change.refuse_stale:
        _refuse_stale(state, change)
    opted_in_at: datetime | None
    opted_out_at: datetime | None
    if change.opted_in:
        opted_in_at, opted_out_at = change.occurred_at, None
    else:
        opted_in_at, opted_out_at = state.opted_in_at, change.occurred_at
    return replace(
        state,
        opted_in=change.opted_in,
        opted_in_at=opted_in_at,
        opted_out_at=opted_out_at,
        source=change.source,
        consent_method=change.consent_method or state.consent_method,
        updated_at=now,
    )


def _refuse_stale(state: ConsentState, change: ConsentChange) -> None:
    if (
        change.opted_in
        and not state.opted_in
        and state.opted_out_at is not None
        and change.occurred_at < state.opted_out_at
    ):
        raise StaleChange(
            f"is before the contact opted out at {format_rfc3339(state.opted_out_at)}; "
            "consent given before an opt-out cannot restore it"
        )
    # Whether the record is still opted in or was opted out since: an opt-out from
    # before the opt-in would leave opted_out_at earlier than opted_in_at.
    if (
        not change.opted_in
        and state.opted_in_at is not None
        and change.occurred_at < state.opted_in_at
    ):
        raise StaleChange(
            f"is before the contact opted in at {format_rfc3339(state.opted_in_at)}; "
            "an opt-out dated before that consent cannot end it"
        )


@dataclass(slots=True)
class _Contact:
    """One contact's changes in this batch, folded from its state before it, with
    the history they write: event rows and their proof-log leaves."""

    org_id: uuid.UUID
    sender_number: str
    items: list[tuple[int, ConsentChange]]
    before: ConsentState | None = None
    after: ConsentState | None = None
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    leaves: list[tuple[uuid.UUID, uuid.UUID, bytes]] = field(default_factory=list)

    def fold(self, now: datetime, created_at: str) -> None:
        self.after, self.accepted, self.rejected = self.before, [], []
        self.events, self.leaves = [], []
        for index, change in self.items:
            try:
                updated = apply_change(self.org_id, self.after, change, now)
            except StaleChange as stale:
                # Named as a capture's field; a revocation names its own (received_at).
                self.rejected.append(
                    Rejection(index, "VALIDATION_FAILED", {"evidence.captured_at": stale.reason})
                )
                continue
            # The first change of a contact unknown before this batch creates it.
            created = self.before is None and not self.accepted
            # Event ids are UUIDv7 made in order: history keeps the batch's order.
            accepted = Accepted(index, updated, created, new_id())
            self.accepted.append(accepted)
            leaf = self._history(accepted, change, now, created_at)
            # The record's head moves to this event, which the next one names.
            self.after = replace(updated, event_count=updated.event_count + 1, last_leaf_hash=leaf)

    def _history(self, accepted: Accepted, change: ConsentChange, now: datetime, at: str) -> bytes:
        """The change's event row and its leaf (what the log appends); the leaf hash.

        The event names its place in the record's history and the leaf hash of the
        record's event before it (event format 2), both known before the log's
        head is locked: a gap in a record's story shows in what was signed."""
        kind = "opt_in" if change.opted_in else "opt_out"
        record = accepted.record
        sequence = record.event_count + 1
        self.events.append(
            {
                "org_id": self.org_id,
                "id": accepted.event_id,
                "consent_id": record.id,
                "type": kind,
                "consent_method": change.consent_method,
                "source": change.source,
                "reason": change.reason,
                "evidence": change.evidence,
                "actor": change.actor,
                "occurred_at": change.occurred_at,
                "created_at": now,
                "sequence": sequence,
                "previous_leaf_hash": record.last_leaf_hash,
            }
        )
        document = log.event_document(
            org_id=self.org_id,
            event_id=accepted.event_id,
            consent_id=record.id,
            phone_number_id=record.phone_number_id,
            contact_number=record.contact_number,
            type=kind,
            consent_method=change.consent_method,
            source=change.source,
            reason=change.reason,
            evidence=change.evidence,
            actor=change.actor,
            occurred_at=change.occurred_at,
            created_at=at,
            sender_number=self.sender_number,
            sequence=sequence,
            previous_leaf_hash=record.last_leaf_hash,
        )
        leaf = log.leaf_of(document)
        self.leaves.append((accepted.event_id, record.id, leaf))
        return leaf


class Turn(Protocol):
    """How a caller writing batches on several connections at once orders them
    (see ``record_changes``)."""

    async def take(self) -> None:
        """Awaited before the batch's first write."""

    def pass_on(self) -> None:
        """Called once the batch's records are written and the log's head is
        locked: from there on it waits for no other writer, so the next batch
        may write."""


# A folding batch given a turn yields to the event loop every this many contacts.
YIELD_EVERY = 50


async def record_changes(
    session: AsyncSession,
    org: OrgScope,
    changes: Sequence[tuple[int, ConsentChange]],
    *,
    turn: Turn | None = None,
) -> BatchResult:
    """Apply changes (each with its index in the request) in order; flushes, never commits.

    A change naming a phone number outside the organization is rejected NOT_FOUND;
    a stale one (``refuse_stale``: dated before the record's latest opposite change)
    VALIDATION_FAILED. Every accepted change appends one
    history event. Plan checks are the caller's.

    What can be computed before writing is (records, events, documents and their
    leaf hashes), so row and log locks are held only while the statements run.
    The writes then go records first, then the lock of the organization's log
    head, then events and leaves. ``turn``, when given, is taken before the first
    write and passed on once the head is locked.
    """
    result = BatchResult()
    repo = ConsentRepository(session)
    known = await repo.known_phone_numbers(org, {c.phone_number_id for _, c in changes})
    contacts: dict[ContactKey, _Contact] = {}
    for index, change in changes:
        if change.phone_number_id not in known:
            result.rejected.append(Rejection(index, "NOT_FOUND", {"phone_number_id": "not found"}))
            continue
        key = ContactKey(change.phone_number_id, change.contact_number)
        contact = contacts.setdefault(key, _Contact(org, known[change.phone_number_id], items=[]))
        contact.items.append((index, change))
    if not contacts:
        return result

    now = utcnow()
    created_at = format_rfc3339(now)
    if all(change.consent_method for _, change in changes):
        # Every change can create its record (captures, imports): fold each as a
        # new contact and insert first; only contacts that already existed (the
        # "lost" ones below) are read back, which spares a read of every contact
        # in a batch of new ones.
        for n, contact in enumerate(contacts.values(), start=1):
            contact.fold(now, created_at)
            if turn is not None and n % YIELD_EVERY == 0:
                # Let the batch ahead send its next statement meanwhile: the
                # server would otherwise idle until this whole batch is folded.
                await asyncio.sleep(0)
        if turn is not None:
            await turn.take()
    else:
        if turn is not None:
            await turn.take()
        existing = await repo.lock_states(org, list(contacts))
        for key, contact in contacts.items():
            contact.before = existing.get(key)
            contact.fold(now, created_at)

    fresh = {k: c for k, c in contacts.items() if c.before is None and c.after is not None}
    if fresh:
        inserted = await repo.insert_states([c.after for c in fresh.values() if c.after])
        lost = [key for key, c in fresh.items() if c.after and c.after.id not in inserted]
        if lost:
            # Another transaction created these contacts first: start from theirs.
            for key, state in (await repo.lock_states(org, lost)).items():
                contacts[key].before = state
                contacts[key].fold(now, created_at)

    await repo.update_states(
        org,
        [c.after for c in contacts.values() if c.before is not None and c.after and c.accepted],
    )
    events: list[dict[str, Any]] = []
    leaves: list[tuple[uuid.UUID, uuid.UUID, bytes]] = []
    for contact in contacts.values():
        result.accepted.extend(contact.accepted)
        result.rejected.extend(contact.rejected)
        events.extend(contact.events)
        leaves.extend(contact.leaves)
    result.accepted.sort(key=lambda a: a.index)
    result.rejected.sort(key=lambda r: r.index)
    # History in the order its ids were made (a refolded contact's come last).
    events.sort(key=_event_id)
    leaves.sort(key=_first)
    # Every event is a leaf of the organization's log, in the same transaction.
    head = await log.head(session, org, lock=True) if leaves else None
    if turn is not None:
        turn.pass_on()
    await repo.insert_events(events)
    if head is not None:
        await log.append(session, org, head, leaves)
    return result


_event_id = itemgetter("id")
_first = itemgetter(0)
