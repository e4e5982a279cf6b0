"""Identifiers: UUIDv7 for rows (time-ordered), ULID for request ids."""

from __future__ import annotations

import uuid

import uuid_utils
from asyncpg.pgproto.pgproto import UUID as _CUUID
from ulid import ULID


def new_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so new rows land at the end of the primary key index.

    Made as asyncpg's UUID, the type it reads back from PostgreSQL anyway: a
    ``uuid.UUID`` (equal to and hashing as the standard one) written in C, a
    third of the cost to make, a tenth to print, and sent without conversion.
    An import makes two per row.
    """
    id: uuid.UUID = _CUUID(uuid_utils.uuid7().bytes)
    return id


def new_request_id() -> str:
    return str(ULID())
