"""``Database.driver_connection``: the fast check's own asyncpg pool (PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentmessage.db.engine import Database, create_engine


@pytest.fixture
async def database(database_url_factory: Any) -> Any:
    database = Database(create_engine(database_url_factory("postgresql"), pool_size=2))
    yield database
    await database.dispose()


async def test_statements_commit_on_their_own_and_plans_are_generic(database: Database) -> None:
    async with database.driver_connection() as connection:
        await connection.execute("CREATE TABLE driver_probe (n integer)")
        await connection.execute("INSERT INTO driver_probe VALUES (1)")
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    # Another connection sees the row: nothing waited for a COMMIT.
    async with database.engine.connect() as other:
        assert (await other.exec_driver_sql("SELECT count(*) FROM driver_probe")).scalar() == 1


async def test_a_second_caller_waits_for_a_connection_and_gets_one(database: Database) -> None:
    """Two connections at most (the engine's pool size): a third caller waits."""
    held = asyncio.Event()
    release = asyncio.Event()
    served: list[int] = []

    async def hold(n: int) -> None:
        async with database.driver_connection() as connection:
            served.append(await connection.fetchval("SELECT pg_backend_pid()"))
            if len(served) == 2:
                held.set()
            await release.wait()

    holders = [asyncio.create_task(hold(n)) for n in range(2)]
    await held.wait()
    third = asyncio.create_task(hold(2))
    await asyncio.sleep(0.05)
    assert not third.done() and len(served) == 2
    release.set()
    await asyncio.gather(*holders, third)
    assert len(served) == 3 and served[2] in served[:2]  # a kept connection, reused


async def test_a_url_that_turns_statement_caching_off_is_honoured(
    database_url_factory: Any,
) -> None:
    """SQLAlchemy's ``prepared_statement_cache_size=0`` (for a pooler in transaction
    mode) is not an asyncpg option: it must not break the pool, and the pool
    leaves the session's plan settings alone there."""
    url = database_url_factory("postgresql") + "?prepared_statement_cache_size=0"
    database = Database(create_engine(url))
    try:
        async with database.driver_connection() as connection:
            assert await connection.fetchval("SELECT 1") == 1
            assert await connection.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await database.dispose()
    with pytest.raises(RuntimeError, match="disposed"):
        async with database.driver_connection():
            pass
