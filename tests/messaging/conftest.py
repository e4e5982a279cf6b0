"""Messaging fixtures: settings with Twilio credentials (the provider stays the sandbox
unless a test asks for Twilio), a dispatcher the tests drive pass by pass, and the
Twilio stand-in server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentmessage.app import create_app
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.fixtures.twilio_standin import TwilioStandIn
from tests.messaging.helpers import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[TwilioStandIn]:
    server = TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def standin(twilio_server: TwilioStandIn) -> TwilioStandIn:
    twilio_server.reset()
    return twilio_server


def messaging_settings(tmp_path: Path, standin_url: str, **overrides: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        public_base_url=PUBLIC_BASE_URL,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,  # type: ignore[arg-type]
        twilio_api_base_url=standin_url,
        twilio_timeout_seconds=5,
        dispatcher_retry_base_seconds=5,
        dispatcher_max_attempts=3,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: Path, standin: TwilioStandIn) -> Settings:
    return messaging_settings(tmp_path, standin.url)


@pytest.fixture
async def dispatcher(
    engine: AsyncEngine, connection: AsyncConnection, settings: Settings
) -> AsyncIterator[Dispatcher]:
    """Sends through the sandbox, in the test's transaction; the test runs each pass."""
    dispatcher = Dispatcher.from_settings(TestDatabase(engine, connection), settings)
    yield dispatcher
    await dispatcher.provider.aclose()


@pytest.fixture
def twilio_settings(tmp_path: Path, standin: TwilioStandIn) -> Settings:
    return messaging_settings(tmp_path, standin.url, sms_provider="twilio")


@pytest.fixture
async def twilio_client(
    engine: AsyncEngine, connection: AsyncConnection, twilio_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The app of a server whose provider is Twilio (the stand-in)."""
    app = create_app(twilio_settings, TestDatabase(engine, connection))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def twilio_dispatcher(
    engine: AsyncEngine, connection: AsyncConnection, twilio_settings: Settings
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher.from_settings(TestDatabase(engine, connection), twilio_settings)
    yield dispatcher
    await dispatcher.provider.aclose()
