"""Identifiers: UUIDv7 for rows (time-ordered), ULID for request ids."""

from __future__ import annotations

import uuid

import uuid_utils.compat
from ulid import ULID


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so new rows land at the end of the primary key index."""
    return uuid_utils.compat.uuid7()


def new_request_id() -> str:
    return str(ULID())
