"""Kept driver connections, handed out in order of arrival (``Database.driver_connection``).

asyncpg's own pool did the job with three costs on the fast check's path, the
hottest we serve: a task per release (``asyncio.shield``), a reset step per
release, and a queue that lets a newcomer take a freed connection before the
callers already waiting (a semaphore in front of it restored the order, at the
price of one more lock per call). Here a freed connection goes straight to the
first caller waiting, or back on the shelf; nothing else happens per call.

What it keeps simple on purpose: a connection whose use raised (an error, a
cancelled call) is closed, not kept, since nobody knows what state a half-run
statement left it in; a new one is opened in its place when needed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

# A waiter is handed a connection, or None: a slot of its own to open one in.
_Waiter = asyncio.Future[Any]


class PoolClosed(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the database was disposed of")


class DriverPool:
    """Up to ``size`` connections from ``connect``, opened when first needed and kept."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], size: int) -> None:
        if size < 1:
            raise ValueError("a pool holds at least one connection")
        self._connect = connect
        self._size = size
        self._opened = 0  # connections open or being opened, idle or in use
        self._idle: list[Any] = []  # the most recently used last: warm caches first
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    def connection(self) -> Lease:
        """``async with pool.connection() as connection:``, returned on exit."""
        return Lease(self)

    async def close(self) -> None:
        """Close the idle connections; those in use close when returned. Waiters
        (and later callers) get ``PoolClosed``."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed())
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)

    async def _acquire(self) -> Any:
        if self._closed:
            raise PoolClosed()
        if self._idle:  # only ever idle while nobody waits
            return self._idle.pop()
        if self._opened < self._size:
            self._opened += 1
            return await self._open()
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection (or a slot) just as it was cancelled: pass it on.
                self._pass_on(waiter.result())
            elif not waiter.done():
                self._waiters.remove(waiter)
            raise
        return handed if handed is not None else await self._open()

    async def _open(self) -> Any:
        """A new connection, in a slot already counted in ``_opened``."""
        try:
            return await self._connect()
        except BaseException:
            self._pass_on(None)
            raise

    def _release(self, connection: Any) -> None:
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            self._discard(connection)
        else:
            self._pass_on(connection)

    def _discard(self, connection: Any) -> None:
        connection.terminate()  # no round trip: a broken link would only wait
        self._pass_on(None)

    def _pass_on(self, handed: Any) -> None:
        """A connection (or, with None, a free slot) to the first caller still
        waiting, or to the shelf."""
        if not self._closed:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(handed)
                    return
        if handed is None:
            self._opened -= 1
        elif self._closed:
            handed.terminate()
            self._opened -= 1
        else:
            self._idle.append(handed)


class Lease:
    """One use of a pool's connection (a class, not a generator: this is per call
    on the hottest path)."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: DriverPool) -> None:
        self._pool = pool
        self._connection: Any = None

    async def __aenter__(self) -> Any:
        self._connection = await self._pool._acquire()
        return self._connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if kind is None:
            self._pool._release(connection)
        else:
            self._pool._discard(connection)
