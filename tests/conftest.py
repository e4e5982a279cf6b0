"""Every test runs on SQLite and on a real PostgreSQL 15 the suite starts itself.

The schema is built by the Alembic migrations (so they are tested too); each test
runs inside a transaction that is rolled back, and the app's sessions join it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from agentmessage.app import create_app
from agentmessage.db.engine import Database, async_url, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.settings import Settings
from tests.fixtures.builders import Tenant, make_tenant
from tests.fixtures.postgres import PostgresCluster, cluster_for_tests
from tests.fixtures.redis import RedisServer, server_for_tests

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    yield from cluster_for_tests()


@pytest.fixture(scope="session")
def database_url_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Makes an empty database of the given backend; returns its URL."""
    counter = iter(range(1_000_000))

    def make(backend: str) -> str:
        name = f"am_{next(counter)}"
        if backend == "sqlite":
            return async_url(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / name}.db")
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return async_url(cluster.create_database(name))

    return make


@pytest.fixture(scope="session", params=BACKENDS)
async def engine(
    request: pytest.FixtureRequest, database_url_factory
) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    engine = create_engine(database_url_factory(request.param))
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


def _joined_session(connection: AsyncConnection) -> AsyncSession:
    return AsyncSession(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


class TestDatabase(Database):
    """Hands the app sessions that join the test's rolled-back transaction."""

    __test__ = False  # a fixture class, not a test class

    def __init__(self, engine: AsyncEngine, connection: AsyncConnection) -> None:
        super().__init__(engine)
        self.connection = connection

    def session(self, *, writes: bool) -> AsyncSession:
        return _joined_session(self.connection)

    def statement_session(self) -> AsyncSession:
        return _joined_session(self.connection)

    def snapshot_session(self) -> AsyncSession:
        return _joined_session(self.connection)

    @asynccontextmanager
    async def statement(self, *, writes: bool) -> AsyncIterator[AsyncConnection]:
        async with self.connection.begin_nested():
            yield self.connection

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        async with self.connection.begin_nested():
            raw = await self.connection.get_raw_connection()
            yield raw.driver_connection

    async def dispose(self) -> None:
        pass


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from server_for_tests()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with _joined_session(connection) as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")  # type: ignore[arg-type]


@pytest.fixture
async def client(
    engine: AsyncEngine, connection: AsyncConnection, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, TestDatabase(engine, connection))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def tenant(session: AsyncSession) -> Tenant:
    return await make_tenant(session, plan="growth")


@pytest.fixture
async def other_tenant(session: AsyncSession) -> Tenant:
    return await make_tenant(session, plan="growth")


@pytest.fixture
def backend(engine: AsyncEngine) -> str:
    return engine.dialect.name
