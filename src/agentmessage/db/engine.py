"""Engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool

from agentmessage.db.driver_pool import DriverPool

# Execution option that makes an SQLite transaction take the write lock at BEGIN.
# A deferred transaction that reads and then writes can fail with "database is
# locked" when another writer got there first; IMMEDIATE waits instead.
SQLITE_IMMEDIATE = "agentmessage_sqlite_immediate"


def async_url(url: str) -> str:
    """Map plain ``sqlite://`` and ``postgresql://`` URLs to their async drivers."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
    backend = parsed.get_backend_name()
    if backend not in driver:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2", "sqlite"):
        parsed = parsed.set(drivername=driver[backend])
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    parsed: URL = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            parsed, connect_args={"timeout": 30}, json_serializer=_json_dumps
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: asyncpg's costs a BEGIN, a query and a ROLLBACK on every
        # checkout (three per request: a third of a GET's time, by py-spy).
        # Connections are recycled before idle timeouts of proxies instead, and
        # a connection found dead invalidates the pool (SQLAlchemy's default).
        pool_recycle=300,
        connect_args={"server_settings": {"application_name": "agentmessage"}},
        json_serializer=_json_dumps,
    )


def _json_dumps(value: Any) -> str:
    """JSON columns written with orjson: the same documents, several times faster
    than the standard library (a decision's thousand answers, bulk evidence)."""
    return orjson.dumps(value).decode()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: it would otherwise
        # BEGIN lazily, which breaks SAVEPOINT and the IMMEDIATE mode below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_postgresql(session_or_engine: AsyncSession | AsyncEngine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, AsyncSession)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"


class Database:
    """One engine, the kinds of session it hands out, and connections for single statements."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._driver_pool = self._new_driver_pool() if engine.dialect.name == "postgresql" else None
        self._immediate = engine.execution_options(**{SQLITE_IMMEDIATE: True})
        self._reads = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._writes = async_sessionmaker(self._immediate, expire_on_commit=False, autoflush=False)
        # PostgreSQL without BEGIN and ROLLBACK: each statement commits as it
        # runs. SQLite keeps its transactions: they cost no round trip there,
        # and its driver's own autocommit mode would fight the BEGIN we issue.
        self._single = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._snapshot_reads = (
            async_sessionmaker(
                engine.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                ),
                expire_on_commit=False,
                autoflush=False,
            )
            if engine.dialect.name == "postgresql"
            else self._reads
        )
        self._single_reads = (
            async_sessionmaker(self._single, expire_on_commit=False, autoflush=False)
            if self._single is not engine
            else self._reads
        )

    def session(self, *, writes: bool) -> AsyncSession:
        return (self._writes if writes else self._reads)()

    def snapshot_session(self) -> AsyncSession:
        """A read session whose statements all see one snapshot: REPEATABLE READ, READ
        ONLY on PostgreSQL (READ COMMITTED gives each statement its own); SQLite's
        read transaction is one snapshot already."""
        return self._snapshot_reads()

    def statement_session(self) -> AsyncSession:
        """A read session whose statements each run on their own.

        On PostgreSQL it spares a request that reads the BEGIN and ROLLBACK
        round trips (two of a one-row GET's three); PostgreSQL's default READ
        COMMITTED gives each statement its own snapshot anyway. Not for server-side
        cursors (streaming needs a transaction) nor for anything that writes.
        """
        return self._single_reads()

    @asynccontextmanager
    async def statement(self, *, writes: bool) -> AsyncIterator[AsyncConnection]:
        """A Core connection for one statement that commits on its own (autocommit on
        PostgreSQL; on SQLite a short transaction, IMMEDIATE for ``writes``, committed on exit).
        """
        if self._single is not self.engine:
            async with self._single.connect() as connection:
                yield connection
            return
        async with (self._immediate if writes else self.engine).connect() as connection:
            yield connection
            await connection.commit()

    def driver_connection(self) -> AbstractAsyncContextManager[Any]:
        """An asyncpg connection for a hot path that runs statements compiled once
        (``db.compiled``), each committing on its own: ``async with
        database.driver_connection() as connection``. PostgreSQL only.

        From a pool of its own (``db.driver_pool``): SQLAlchemy's checkout cost
        more than the statements, and its overflow connections, closed as soon
        as they are returned, meant new connections (and their statement caches)
        at every burst. This pool keeps its connections (up to the engine's pool
        size), hands them out in order of arrival and returns them without a
        reset round trip: nothing run on them leaves session state behind. Its
        statements use generic plans (PostgreSQL 12 or later), so they must be
        ones whose plan does not depend on their values.
        """
        if self._driver_pool is None:
            raise RuntimeError("driver connections are for PostgreSQL only")
        return self._driver_pool.connection()

    def _driver_pool_size(self) -> int:
        pool = self.engine.pool
        return pool.size() if isinstance(pool, QueuePool) else 10

    def _new_driver_pool(self) -> DriverPool:
        """Opens nothing yet: a connection is opened when first needed."""
        _, options = self.engine.dialect.create_connect_args(self.engine.url)
        # Options of SQLAlchemy's asyncpg adapter, not of asyncpg itself.
        for name in ("async_creator_fn", "prepared_statement_name_func"):
            options.pop(name, None)
        cache = options.pop("prepared_statement_cache_size", None)
        settings = {"application_name": "agentmessage"}
        if cache is not None:
            options["statement_cache_size"] = cache
        if cache != 0:
            # The same few statements, run again and again with new values:
            # planned once. PostgreSQL's default replanned the check's read on
            # every call (0.2 ms, four times its run). Not where the URL turns
            # statement caching off (a pooler in transaction mode), which
            # shares sessions.
            settings["plan_cache_mode"] = "force_generic_plan"

        async def connect() -> Any:
            import asyncpg  # PostgreSQL only: SQLite installs need not load it

            return await asyncpg.connect(**options, server_settings=settings)

        return DriverPool(connect, self._driver_pool_size())

    async def dispose(self) -> None:
        if self._driver_pool is not None:
            await self._driver_pool.close()
        await self.engine.dispose()
