"""Tables. Every table carries ``org_id`` and every primary key and unique index
leads with it, so the schema can be distributed by organization (Citus) as is.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
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
    created_at: Mapped[datetime]


class PhoneNumber(Base):
    """A sender number an organization texts from."""

    __tablename__ = "phone_numbers"
    __table_args__ = (
        UniqueConstraint("org_id", "number"),
        ForeignKeyConstraint(["org_id"], ["organizations.id"]),
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
