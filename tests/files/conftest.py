"""File commands write with real commits: each test gets a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database, create_engine, is_postgresql
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


@pytest.fixture
async def fresh_database(database, database_url_factory) -> AsyncIterator[Database]:
    """A second empty database of the same kind (where an export goes back in)."""
    backend = "postgresql" if is_postgresql(database.engine) else "sqlite"
    url = database_url_factory(backend)
    fresh = Database(create_engine(url))
    await upgrade_to_head(fresh.engine)
    fresh.url = url  # type: ignore[attr-defined]
    yield fresh
    await fresh.dispose()


@pytest.fixture
def agentmessage(database, tmp_path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command as a user runs it: a subprocess on this test's database (or on
    the one given as ``on``)."""
    command = str(Path(sys.executable).with_name("agentmessage"))

    def run(*args: str, on: Database | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AGENTMESSAGE_DATABASE_URL": (on or database).url,  # type: ignore[attr-defined]
            "AGENTMESSAGE_DATA_DIR": str(tmp_path),
        }
        return subprocess.run(
            [command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    return run
