"""INSERT ... ON CONFLICT for the dialect at hand."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_or_ignore(session: AsyncSession, table: Any) -> Any:
    """An INSERT that skips rows colliding with a unique constraint."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_or_add(
    session: AsyncSession,
    table: Any,
    values: dict[str, Any],
    *,
    conflict: list[str],
    counter: str,
    at_most: int,
) -> Any:
    """One statement that adds ``values[counter]`` to the row with the same
    ``conflict`` columns (inserting it when absent), only while the sum stays
    ``<= at_most``. ``RETURNING`` the new sum; no row means nothing was added.

    Atomic on both databases: PostgreSQL re-checks the WHERE against the row it
    locked, SQLite runs it under the write lock.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(table).values(values)
    column = getattr(table, counter)
    total = column + getattr(insert.excluded, counter)
    return insert.on_conflict_do_update(
        index_elements=conflict, set_={counter: total}, where=total <= at_most
    ).returning(column)
