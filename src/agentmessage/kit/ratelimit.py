"""Per-minute allowances, shared by every server process.

A fixed window per clock minute (UTC). Spending is one atomic check-and-add in
a shared store, so an allowance holds however many processes serve it, and a
refused hit spends nothing: a batch that does not fit leaves what is left to
smaller requests.

Two stores: the database (the default; table ``rate_limit_windows``) and Redis.
The ``limits`` package was the first choice for Redis, but its fixed window adds
before it compares (a refused batch of 500 would still spend 500 and lock the
organization out for the rest of the minute) and starts a window at the first
hit rather than at the minute. A short Lua script gives both properties, the
same as the database store.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, cast

from redis.asyncio import Redis
from sqlalchemy import Delete, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentmessage.db.engine import Database
from agentmessage.db.models import RateLimitWindow
from agentmessage.db.upsert import insert_or_add
from agentmessage.kit.clock import utcnow

WINDOW: Final = timedelta(minutes=1)
# Database windows older than this are deleted when an owner opens a new one.
RETAIN: Final = timedelta(hours=1)
# Redis keys outlive their window by a little, then expire on their own.
REDIS_TTL_SECONDS: Final = 120

_WINDOWS: Final = cast(Table, RateLimitWindow.__table__)


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The answer to one hit, and what the ``RateLimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Whole seconds until the window resets (1..60)."""

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


class RateLimitStore(Protocol):
    """Where the units spent per owner and window live."""

    async def spend(
        self, owner: uuid.UUID, window_start: datetime, cost: int, limit: int
    ) -> tuple[bool, int]:
        """Add ``cost`` if the window's total stays ``<= limit``, atomically.

        Returns whether it was added, and the window's total afterwards.
        """
        ...

    async def spent(self, owner: uuid.UUID, window_start: datetime) -> int: ...

    async def close(self) -> None: ...


class RateLimiter:
    """Charges owners (organizations) against a per-minute limit."""

    def __init__(self, store: RateLimitStore) -> None:
        self.store = store

    async def hit(self, owner: uuid.UUID, *, cost: int, limit: int) -> RateLimitDecision:
        """Spend ``cost`` units if they fit what is left this minute; else spend nothing.

        A cost above the whole limit is refused without asking the store.
        """
        if cost < 1:
            raise ValueError("a hit costs at least 1")
        now = utcnow()
        start = window_start(now)
        if cost > limit:
            total, allowed = await self.store.spent(owner, start), False
        else:
            allowed, total = await self.store.spend(owner, start, cost, limit)
        return decision_of(allowed, limit, total, now)

    async def peek(self, owner: uuid.UUID, *, limit: int) -> RateLimitDecision:
        """Where the owner stands this minute, spending nothing (``allowed`` is True)."""
        now = utcnow()
        total = await self.store.spent(owner, window_start(now))
        return decision_of(True, limit, total, now)

    async def close(self) -> None:
        await self.store.close()


def window_start(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def decision_of(allowed: bool, limit: int, total: int, now: datetime) -> RateLimitDecision:
    """The answer to a hit at ``now`` that left the window at ``total``."""
    left = (window_start(now) + WINDOW - now).total_seconds()
    return RateLimitDecision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - total),
        reset=max(1, math.ceil(left)),
    )


class DatabaseStore:
    """Windows as rows of ``rate_limit_windows``, one statement per spend.

    Each spend commits on its own at once, never inside the request's
    transaction (on SQLite that transaction may hold the write lock). On
    PostgreSQL it is a single autocommit statement: the window's row is locked
    only while PostgreSQL runs it, not until the server's event loop gets round
    to a COMMIT (which, under load, serialized every request of an organization).
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.spend_statement = insert_or_add(
            database.engine.dialect.name,
            _WINDOWS,
            conflict=["org_id", "window_start"],
            counter="spent",
        )

    async def spend(
        self, owner: uuid.UUID, window_start: datetime, cost: int, limit: int
    ) -> tuple[bool, int]:
        async with self.database.statement(writes=True) as connection:
            total = await connection.scalar(
                self.spend_statement,
                {"org_id": owner, "window_start": window_start, "spent": cost, "at_most": limit},
            )
            if total is None:
                return False, await self._spent(connection, owner, window_start)
            if total == cost:
                # This spend opened the window (every spend costs >= 1): a cheap
                # moment, once per owner and minute, to drop its stale windows.
                await connection.execute(self.stale(owner, window_start - RETAIN))
            return True, int(total)

    @staticmethod
    def stale(owner: Any, before: Any) -> Delete:
        """Deletes the owner's windows that started before ``before`` (values, or
        parameters of a statement compiled once)."""
        return delete(_WINDOWS).where(_WINDOWS.c.org_id == owner, _WINDOWS.c.window_start < before)

    async def spent(self, owner: uuid.UUID, window_start: datetime) -> int:
        async with self.database.statement(writes=False) as connection:
            return await self._spent(connection, owner, window_start)

    @staticmethod
    async def _spent(connection: AsyncConnection, owner: uuid.UUID, window_start: datetime) -> int:
        total = await connection.scalar(
            select(_WINDOWS.c.spent).where(
                _WINDOWS.c.org_id == owner, _WINDOWS.c.window_start == window_start
            )
        )
        return int(total or 0)

    async def close(self) -> None:
        pass


# KEYS[1] the window's key; ARGV cost, limit, ttl. Returns {added (0|1), total}.
_SPEND_SCRIPT: Final = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if total + cost > tonumber(ARGV[2]) then
  return {0, total}
end
total = redis.call('INCRBY', KEYS[1], cost)
if total == cost then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {1, total}
"""


class RedisStore:
    """Windows as Redis counters (``AGENTMESSAGE_REDIS_URL``), one script call per spend.

    The key names the window's start, so a new minute is a new key whatever the
    TTL; the TTL only clears old keys away.
    """

    def __init__(self, url: str, *, prefix: str = "agentmessage:ratelimit:") -> None:
        self.client: Redis = Redis.from_url(url)
        self.prefix = prefix
        self._spend = self.client.register_script(_SPEND_SCRIPT)

    def _key(self, owner: uuid.UUID, window_start: datetime) -> str:
        return f"{self.prefix}{owner}:{int(window_start.timestamp())}"

    async def spend(
        self, owner: uuid.UUID, window_start: datetime, cost: int, limit: int
    ) -> tuple[bool, int]:
        added, total = await self._spend(
            keys=[self._key(owner, window_start)], args=[cost, limit, REDIS_TTL_SECONDS]
        )
        return bool(added), int(total)

    async def spent(self, owner: uuid.UUID, window_start: datetime) -> int:
        return int(await self.client.get(self._key(owner, window_start)) or 0)

    async def close(self) -> None:
        await self.client.aclose()
