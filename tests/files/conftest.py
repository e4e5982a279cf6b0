"""File commands write with real commits: each test gets a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.orgs.service import create_organization, create_phone_number


@dataclass
class Org:
    id: OrgScope
    number_id: object
    number: str


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request, database_url_factory) -> AsyncIterator[Database]:
    url = database_url_factory(request.param)
    database = Database(create_engine(url))
    await upgrade_to_head(database.engine)
    database.url = url  # type: ignore[attr-defined]
    yield database
    await database.dispose()


async def make_org(database: Database, plan: str = "growth", number: str = "+15550100001") -> Org:
    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Files", plan=plan)
        phone = await create_phone_number(session, org_id=org.id, number=number)
        await session.commit()
        return Org(OrgScope(org.id), phone.id, number)


@pytest.fixture
async def org(database) -> Org:
    return await make_org(database)
