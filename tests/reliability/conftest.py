"""Reliability tests commit for real: each test gets a fresh database of each backend,
with a pool wide enough for the concurrent requests the race tests make."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, database_url_factory) -> AsyncIterator[Database]:  # type: ignore[no-untyped-def]
    url = database_url_factory(request.param)
    # 50 requests at once: on PostgreSQL each may hold a connection.
    database = Database(create_engine(url, pool_size=30))
    await upgrade_to_head(database.engine)
    yield database
    await database.dispose()


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, with real commits (no joined transaction)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", timeout=60
    ) as client:
        yield client
