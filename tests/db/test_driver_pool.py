"""``db.driver_pool.DriverPool``: kept asyncpg connections, in order of arrival.

Real connections to the test cluster; a failing ``connect`` is a real one too
(a port nothing listens on).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from agentmessage.db.driver_pool import DriverPool, PoolClosed
from tests.fixtures.network import free_port


@pytest.fixture
def dsn(database_url_factory: Any) -> str:
    url = make_url(database_url_factory("postgresql")).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[DriverPool]:
    pool = DriverPool(lambda: asyncpg.connect(dsn), size=1)
    yield pool
    await pool.close()


async def _pid(pool: DriverPool) -> int:
    async with pool.connection() as connection:
        pid: int = await connection.fetchval("SELECT pg_backend_pid()")
        return pid


async def _queue(pool: DriverPool, names: str, order: list[str]) -> list[asyncio.Task[None]]:
    """One task per name, queued in that order for the pool's connection."""

    async def take(name: str) -> None:
        async with pool.connection() as connection:
            await connection.fetchval("SELECT 1")
            order.append(name)

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(take(name)))
        await asyncio.sleep(0)  # the task reaches the queue before the next starts
    return tasks


async def test_waiting_callers_are_served_in_order_of_arrival(pool: DriverPool) -> None:
    order: list[str] = []
    async with pool.connection():
        waiting = await _queue(pool, "abc", order)
    # Released: the connection went to "a". A caller arriving now queues after "c".
    late = await _queue(pool, "d", order)
    await asyncio.gather(*waiting, *late)
    assert order == ["a", "b", "c", "d"]


async def test_a_connection_is_kept_and_reused(pool: DriverPool) -> None:
    assert await _pid(pool) == await _pid(pool)


async def test_a_connection_whose_use_raised_is_closed_and_replaced(pool: DriverPool) -> None:
    first = await _pid(pool)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with pool.connection() as connection:
            await connection.execute("SELECT * FROM no_such_table")
    assert await _pid(pool) != first


async def test_a_cancelled_waiter_loses_no_connection(pool: DriverPool) -> None:
    order: list[str] = []
    async with pool.connection():
        (gone,) = await _queue(pool, "x", order)
        kept = await _queue(pool, "y", order)
        gone.cancel()
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*kept), 5)
    assert order == ["y"] and gone.cancelled()


async def test_a_waiter_cancelled_once_handed_the_connection_passes_it_on(
    pool: DriverPool,
) -> None:
    order: list[str] = []
    async with pool.connection():
        (gone,) = await _queue(pool, "x", order)
        kept = await _queue(pool, "y", order)
    gone.cancel()  # handed the connection on release, cancelled before it ran
    await asyncio.wait_for(asyncio.gather(*kept), 5)
    assert order == ["y"] and gone.cancelled()


async def test_a_failed_connect_frees_its_place(dsn: str) -> None:
    attempts = 0

    async def connect() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return await asyncpg.connect(port=free_port(), host="127.0.0.1", timeout=5)
        return await asyncpg.connect(dsn)

    pool = DriverPool(connect, size=1)
    try:
        with pytest.raises(OSError):
            await _pid(pool)
        assert await asyncio.wait_for(_pid(pool), 5) > 0
    finally:
        await pool.close()


async def test_close_fails_waiters_and_closes_connections_in_use_when_returned(
    pool: DriverPool,
) -> None:
    order: list[str] = []
    async with pool.connection() as held:
        (waiting,) = await _queue(pool, "w", order)
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiting
        assert not held.is_closed()
    assert held.is_closed() and order == []
    with pytest.raises(PoolClosed, match="disposed"):
        await _pid(pool)
