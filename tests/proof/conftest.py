"""Tamper and race tests commit for real: each test gets a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, database_url_factory) -> AsyncIterator[Database]:  # type: ignore[no-untyped-def]
    url = database_url_factory(request.param)
    database = Database(create_engine(url))
    await upgrade_to_head(database.engine)
    yield database
    await database.dispose()
