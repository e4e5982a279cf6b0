"""INSERT ... ON CONFLICT for the dialect at hand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_or_ignore(session: AsyncSession, table: Any) -> Any:
    """An INSERT that skips rows colliding with a unique constraint."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_or_add(dialect: str, table: Table, *, conflict: list[str], counter: str) -> Any:
    """One statement that adds the ``counter`` parameter to the row with the same
    ``conflict`` columns (inserting it when absent), only while the sum stays
    ``<= at_most`` (a parameter too). ``RETURNING`` the new sum; no row means
    nothing was added. Build it once per ``dialect`` and run it with
    parameters: building it per call cost more CPU than running it.

    Atomic on both databases: PostgreSQL re-checks the WHERE against the row it
    locked, SQLite runs it under the write lock.
    """
    module = postgresql if dialect == "postgresql" else sqlite
    insert = module.insert(table).values({name: bindparam(name) for name in [*conflict, counter]})
    column = table.c[counter]
    total = column + getattr(insert.excluded, counter)
    return insert.on_conflict_do_update(
        index_elements=conflict, set_={counter: total}, where=total <= bindparam("at_most")
    ).returning(column)
