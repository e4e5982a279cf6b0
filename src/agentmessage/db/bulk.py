"""Appending many rows at once: COPY on PostgreSQL, the driver's executemany on SQLite.

For the append-only tables (history events, log leaves) a batch of a thousand
rows goes through ``COPY ... FROM STDIN (FORMAT binary)`` in the transaction
under way: several times faster than INSERT on PostgreSQL, where SQLAlchemy
would otherwise build and bind every row's parameters in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Table, any_, bindparam, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from agentmessage.db.upsert import insert_or_ignore

# Below this, a plain executemany costs less than setting up a COPY.
COPY_FROM = 32


async def append_rows(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (all with the same keys) into ``table``; flushes nothing else."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if len(rows) < COPY_FROM:
        await session.execute(insert(table), [dict(row) for row in rows])
        return
    columns = list(rows[0])
    if dialect.name != "postgresql":
        await _sqlite_executemany(session, table, columns, rows)
        return
    # Tuples built in C (itemgetter), then only the JSON columns touched again.
    getter: Callable[[Mapping[str, Any]], Any] = (
        itemgetter(*columns)
        if len(columns) > 1
        else lambda row: (row[columns[0]],)  # itemgetter of one name: not a tuple
    )
    json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
    if json_at:
        records: list[Any] = []
        for row in rows:
            values = list(getter(row))
            for i in json_at:
                values[i] = _json(values[i])
            records.append(values)
    else:
        records = [getter(row) for row in rows]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table.name, records=records, columns=columns
    )


async def _sqlite_executemany(
    session: AsyncSession, table: Table, columns: list[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """The driver's own executemany, values converted by the columns' own types
    (exactly what SQLAlchemy would store), without its per-row bookkeeping,
    which costs ten times the insert itself."""
    dialect = session.get_bind().dialect
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    ]
    records = [
        tuple(
            value if process is None else process(value)
            for process, value in zip(processors, (row[name] for name in columns), strict=True)
        )
        for row in rows
    ]
    names = ", ".join(table.c[name].name for name in columns)
    placeholders = ", ".join("?" for _ in columns)
    # Every name is a column of our own Table, never input.
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({placeholders})"  # noqa: S608
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.executemany(sql, records)  # type: ignore[union-attr]


def _json(value: Any) -> str | None:
    # JSONDocument stores Python None as SQL NULL, as the ORM path does.
    return None if value is None else orjson.dumps(value).decode()


async def insert_returning_new(
    session: AsyncSession, table: Table, columns: Mapping[str, Sequence[Any]], key: str
) -> list[Any]:
    """INSERT rows given as ``columns`` (each column's values, in row order),
    skipping any that collides with a unique constraint; the ``key`` column of the
    rows actually inserted.

    On PostgreSQL one prepared statement over the column arrays
    (``INSERT ... SELECT * FROM unnest($1, $2, ...) ON CONFLICT DO NOTHING``),
    whatever the batch size; elsewhere an executemany of ``ON CONFLICT DO NOTHING``.
    """
    names = list(columns)
    if not names or not columns[names[0]]:
        return []
    if session.get_bind().dialect.name != "postgresql":
        rows = [
            dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
        ]
        statement = insert_or_ignore(session, table).returning(table.c[key])
        return list((await session.execute(statement, rows)).scalars())
    sql = _unnest_insert(table, tuple(names), key)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    found = await raw.driver_connection.fetch(sql, *columns.values())  # type: ignore[union-attr]
    return [record[0] for record in found]


@cache
def _unnest_insert(table: Table, columns: tuple[str, ...], key: str) -> str:
    """The statement, made once per table and columns (it is the same for every
    batch, so asyncpg prepares it once)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    casts = ", ".join(
        f"${n}::{table.c[name].type.compile(dialect=dialect)}[]"
        for n, name in enumerate(columns, start=1)
    )
    # Every name is a column of our own Table (table.c[name] above would have
    # raised otherwise), never input.
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT * FROM unnest({casts}) ON CONFLICT DO NOTHING RETURNING {table.c[key].name}"
    )


def one_of(
    session: AsyncSession, column: Any, values: Sequence[Any], element: TypeEngine[Any]
) -> ColumnElement[bool]:
    """``column IN (values)``. On PostgreSQL ``column = ANY($1)``: one array
    parameter whatever the count, so the statement is prepared once rather than
    rendered anew with a thousand parameters."""
    condition: ColumnElement[bool]
    if session.get_bind().dialect.name == "postgresql":
        condition = column == any_(
            bindparam(None, list(values), postgresql.ARRAY(element), unique=True)
        )
    else:
        condition = column.in_(list(values))
    return condition


def one_of_parameter(column: Any, name: str, element: TypeEngine[Any]) -> ColumnElement[bool]:
    """``column = ANY(:name)`` with ``name`` an array parameter (PostgreSQL): for
    a statement compiled once and run with a list each time (``db.compiled``)."""
    condition: ColumnElement[bool] = column == any_(
        bindparam(name, type_=postgresql.ARRAY(element))
    )
    return condition
