"""Tables. Every table carries ``org_id`` and every primary key and unique index
leads with it, so the schema can be distributed by organization (Citus) as is.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from agentmessage.db.base import Base, JSONDocument
from agentmessage.kit.ids import new_id


class Organization(Base):
    """A business. ``id`` is the organization id every other table leads with."""

    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(32))
    # None: the plan's default allowance.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    help_text: Mapped[str | None] = mapped_column(Text)
    # The one SMS after an opt-out; checked when set (no marketing), else a default.
    opt_out_confirmation: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class PhoneNumber(Base):
    """A sender number an organization texts from."""

    __tablename__ = "phone_numbers"
    __table_args__ = (
        UniqueConstraint("org_id", "number"),
        ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        # An inbound SMS finds its organization by the number it was sent to, so a
        # number has one owner across the service: a second would never hear its
        # contacts' STOPs. The one index not led by org_id: under Citus this small
        # table, read before the organization is known, is a reference table.
        Index(None, "number", unique=True),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """An API key: only the SHA-256 of the secret is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("org_id", "key_hash"),
        ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        # Authentication looks a key up before it knows the organization.
        Index(None, "key_hash"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))
    # The first characters after ``am_live_``, to tell keys apart in a listing.
    key_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConsentRecord(Base):
    """The current consent state of one contact for one sender number."""

    __tablename__ = "consent_records"
    __table_args__ = (
        UniqueConstraint("org_id", "phone_number_id", "contact_number"),
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        # The list endpoint's default order, and one index per filter so that
        # every filtered page is an index range scan in the same order.
        Index(None, "org_id", "updated_at", "id"),
        Index(None, "org_id", "contact_number", "updated_at", "id"),
        Index(None, "org_id", "phone_number_id", "updated_at", "id"),
        Index(None, "org_id", "opted_in", "updated_at", "id"),
        Index(None, "org_id", "consent_method", "updated_at", "id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    phone_number_id: Mapped[uuid.UUID]
    contact_number: Mapped[str] = mapped_column(String(16))
    opted_in: Mapped[bool] = mapped_column(Boolean)
    opted_in_at: Mapped[datetime | None]
    opted_out_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))
    consent_method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The head of the record's history in the proof log: how many events it has
    # and its last event's leaf hash, which the next event names (event format 2).
    event_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_leaf_hash: Mapped[bytes | None] = mapped_column(LargeBinary)


class ConsentEvent(Base):
    """One change to a consent record. Append-only: triggers refuse UPDATE and DELETE."""

    __tablename__ = "consent_events"
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "consent_id"], ["consent_records.org_id", "consent_records.id"]
        ),
        Index(None, "org_id", "consent_id", "created_at", "id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    consent_id: Mapped[uuid.UUID]
    type: Mapped[str] = mapped_column(String(16))
    consent_method: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    # The evidence exactly as the caller sent it, never rewritten.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    actor: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]
    # Event format 2: its place in the record's history (1 for the first) and the
    # leaf hash of the record's event before it. Null on events written before.
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    previous_leaf_hash: Mapped[bytes | None] = mapped_column(LargeBinary)


class RateLimitWindow(Base):
    """Units an organization spent in one minute, shared by every server process."""

    __tablename__ = "rate_limit_windows"

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    window_start: Mapped[datetime] = mapped_column(primary_key=True)
    spent: Mapped[int] = mapped_column(Integer)


class IdempotencyKey(Base):
    """A claimed Idempotency-Key and, once done, the response to replay (24 hours)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index(None, "org_id", "expires_at"),)

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_progress | done
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    locked_until: Mapped[datetime]
    expires_at: Mapped[datetime]


class ImportRun(Base):
    """How far a CSV import got: its batches commit with this checkpoint."""

    __tablename__ = "import_runs"
    __table_args__ = (ForeignKeyConstraint(["org_id"], ["organizations.id"]),)

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    file_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500))
    committed_line: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class HostedForm(Base):
    """A minted hosted consent form, keyed by its token's id: the agreement text the
    page shows (the token carries only its hash) and, once submitted, when and
    which history event it recorded. A form is submitted at most once."""

    __tablename__ = "hosted_forms"
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        ForeignKeyConstraint(
            ["org_id", "consent_event_id"], ["consent_events.org_id", "consent_events.id"]
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the token's jti
    phone_number_id: Mapped[uuid.UUID]
    contact_number: Mapped[str] = mapped_column(String(16))
    agreement_text: Mapped[str] = mapped_column(Text)
    agreement_sha256: Mapped[str] = mapped_column(String(64))
    # The API key that minted it.
    api_key_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    consent_event_id: Mapped[uuid.UUID | None]


class Message(Base):
    """One SMS, outbound or inbound: the outbox (outbound rows the dispatcher sends)
    and the inbox (inbound rows; a provider's message id is unique per organization,
    so a retried webhook inserts nothing and is handled once)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("org_id", "provider", "provider_message_id"),
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        # The dispatcher's queue: due messages of every organization, oldest first.
        Index(None, "status", "next_attempt_at"),
        # Status callbacks name the provider's id only.
        Index(None, "provider_message_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    direction: Mapped[str] = mapped_column(String(8))  # outbound | inbound
    # What an outbound message is for (double_opt_in, opt_out_confirmation, ...).
    purpose: Mapped[str] = mapped_column(String(32))
    # The organization's number: the sender of outbound, the recipient of inbound.
    phone_number_id: Mapped[uuid.UUID]
    from_number: Mapped[str] = mapped_column(String(16))
    to_number: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    # outbound: queued -> sending -> sent -> delivered | failed; inbound: received
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    # Queued: when the dispatcher may (re)try it. Sending: the claim's lease.
    next_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    # Not sent at all after this moment (status skipped_late): an opt-out
    # confirmation goes within 5 minutes of the opt-out or never.
    send_by: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MessageAttempt(Base):
    """One delivery attempt of an outbound message and how it ended."""

    __tablename__ = "message_attempts"
    __table_args__ = (
        UniqueConstraint("org_id", "message_id", "attempt"),
        ForeignKeyConstraint(["org_id", "message_id"], ["messages.org_id", "messages.id"]),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID]
    attempt: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(16))
    # sending | sent | retry | failed | refused | unknown
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(500))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


OPEN = "open"


class Challenge(Base):
    """A double opt-in challenge: the SMS asking the contact to reply YES, and how
    it ended (open -> confirmed | expired | canceled)."""

    __tablename__ = "challenges"
    __table_args__ = (
        # At most one open challenge per contact and sender number: concurrent
        # requests insert-or-ignore against this, so exactly one SMS is queued.
        Index(
            "uq_challenges_open_contact",
            "org_id",
            "phone_number_id",
            "contact_number",
            unique=True,
            postgresql_where=text(f"state = '{OPEN}'"),
            sqlite_where=text(f"state = '{OPEN}'"),
        ),
        # Every challenge of a contact, open or not: a send decision asks which
        # were awaiting a reply at a moment (now, or ``at``), and must not read
        # all of the organization's challenges to find out.
        Index(None, "org_id", "phone_number_id", "contact_number", "created_at"),
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        ForeignKeyConstraint(
            ["org_id", "consent_event_id"], ["consent_events.org_id", "consent_events.id"]
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    phone_number_id: Mapped[uuid.UUID]
    contact_number: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    agreement_text: Mapped[str] = mapped_column(Text)
    confirmation_text: Mapped[str] = mapped_column(Text)
    # The challenge SMS (inserted in the same transaction, right after this row).
    message_id: Mapped[uuid.UUID]
    # The API key that started it.
    api_key_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # Set on confirmation: the YES reply and the opt-in event it recorded.
    inbound_message_id: Mapped[uuid.UUID | None]
    consent_event_id: Mapped[uuid.UUID | None]


class LogLeaf(Base):
    """One history event as leaf ``leaf_index`` of its organization's Merkle log.

    ``hashes`` holds the hashes of every complete subtree that ends at this leaf,
    the leaf's own first (32 bytes each), so that proofs read O(log n) rows and
    nothing is ever rehashed. Append-only: triggers refuse UPDATE and DELETE.
    """

    __tablename__ = "log_leaves"
    # No foreign key to organizations: see migration 0007.
    __table_args__ = (Index(None, "org_id", "consent_id", "leaf_index"),)

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[uuid.UUID]
    consent_id: Mapped[uuid.UUID]
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class LogHead(Base):
    """The size and frontier (roots of its complete subtrees) of an organization's log.

    Locked by every append, which makes leaf indexes gap-free and in commit order.
    """

    __tablename__ = "log_heads"
    __table_args__ = (ForeignKeyConstraint(["org_id"], ["organizations.id"]),)

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime]


class LogCheckpoint(Base):
    """A signed checkpoint (C2SP signed note) of an organization's log. Append-only."""

    __tablename__ = "log_checkpoints"
    __table_args__ = (ForeignKeyConstraint(["org_id"], ["organizations.id"]),)

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]


class LogKey(Base):
    """Every public key that ever signed checkpoints: old ones stay published."""

    __tablename__ = "log_keys"

    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class ConsentDecision(Base):
    """One ``POST /v1/consent/check``: what was asked and what was answered, for
    every contact, stored in the request that answered. Append-only."""

    __tablename__ = "consent_decisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        Index(None, "org_id", "created_at"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    phone_number_id: Mapped[uuid.UUID]
    # The moment the answers are "as of" (None: the moment of the request).
    at: Mapped[datetime | None]
    contacts: Mapped[int] = mapped_column(Integer)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    actor: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime]


class ConsentReview(Base):
    """An inbound reply holding an opt-out word that no rule could read: a person
    decides (possible_revocation). Append-only; the decision is its own row."""

    __tablename__ = "consent_reviews"
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "phone_number_id"], ["phone_numbers.org_id", "phone_numbers.id"]
        ),
        Index(None, "org_id", "created_at"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    phone_number_id: Mapped[uuid.UUID]
    contact_number: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[uuid.UUID]
    body: Mapped[str] = mapped_column(Text)
    # The review word that flagged it (review:cancel).
    rule: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    created_at: Mapped[datetime]


class ConsentReviewDecision(Base):
    """A person's decision on a review: revoke (an opt-out event) or dismiss.
    One per review; append-only."""

    __tablename__ = "consent_review_decisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "review_id"], ["consent_reviews.org_id", "consent_reviews.id"]
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    review_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    consent_event_id: Mapped[uuid.UUID | None]
    decided_at: Mapped[datetime]
