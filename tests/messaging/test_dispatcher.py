"""The dispatcher's life: inline in `serve`, off, `agentmessage worker`, and a claim
whose dispatcher died."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from agentmessage.app import create_app
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import Message
from agentmessage.kit.clock import clock, utcnow
from agentmessage.messaging.outbox.dispatcher import LEASE
from agentmessage.messaging.repository import OutboxRepository
from agentmessage.messaging.service import enqueue
from tests.fixtures.builders import make_tenant
from tests.messaging.conftest import messaging_settings
from tests.messaging.helpers import CONTACT, message, start_challenge

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))
T0 = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)


def dispatcher_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "agentmessage-dispatcher"]


async def test_serve_runs_the_dispatcher_and_sends_right_after_the_commit(
    backend, database_url_factory, tmp_path, standin
):
    # A long poll interval: only the wake-up after the commit can send in time.
    settings = messaging_settings(tmp_path, standin.url, dispatcher_poll_seconds=60)
    database = Database(create_engine(database_url_factory(backend)))
    await upgrade_to_head(database.engine)
    async with database.session(writes=True) as session:
        tenant = await make_tenant(session)
    app = create_app(settings, database)
    async with app.router.lifespan_context(app):
        assert len(dispatcher_tasks()) == 1
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            sent = (await start_challenge(client, tenant)).json()

            async def delivered() -> None:
                while (await message(client, tenant, sent["confirmation_message_id"]))[
                    "status"
                ] != "delivered":
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(delivered(), timeout=10)
    assert dispatcher_tasks() == []  # stopped with the app


async def test_with_the_dispatcher_off_serve_sends_nothing(
    backend, database_url_factory, tmp_path, standin
):
    settings = messaging_settings(tmp_path, standin.url, dispatcher="off")
    database = Database(create_engine(database_url_factory(backend)))
    await upgrade_to_head(database.engine)
    app = create_app(settings, database)
    async with app.router.lifespan_context(app):
        assert dispatcher_tasks() == []


async def test_a_claim_whose_dispatcher_died_is_failed_not_sent_twice(
    client, session, tenant, dispatcher
):
    with clock.frozen(T0):
        sent = (await start_challenge(client, tenant)).json()
        # A dispatcher claims the message, then dies before recording anything.
        async with dispatcher.database.session(writes=True) as claim:
            (_claimed,) = await OutboxRepository(claim).claim_due(
                utcnow(), 10, utcnow() + LEASE, "sandbox"
            )
            await claim.commit()
        assert (await message(client, tenant, sent["confirmation_message_id"]))[
            "status"
        ] == "sending"
        # Within the lease, nobody touches it.
        clock.advance(LEASE - timedelta(seconds=1))
        assert (await dispatcher.run_once()).abandoned == 0
        clock.advance(timedelta(seconds=2))
        report = await dispatcher.run_once()
    assert (report.abandoned, report.sent) == (1, 0)
    closed = await message(client, tenant, sent["confirmation_message_id"])
    assert (closed["status"], closed["error_code"]) == ("failed", "outcome_unknown")


@pytest.mark.parametrize("cli_backend", ["sqlite", "postgresql"])
async def test_worker_once_sends_what_is_due_and_exits(cli_backend, database_url_factory, tmp_path):
    url = database_url_factory(cli_backend)
    database = Database(create_engine(url))
    try:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
            await enqueue(session, tenant.org_id, tenant.number, CONTACT, "Hello", "help")
            await session.commit()
        env = {
            **os.environ,
            "AGENTMESSAGE_DATABASE_URL": url,
            "AGENTMESSAGE_DATA_DIR": str(tmp_path),
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [AGENTMESSAGE, "worker", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "sent": 1,
            "retried": 0,
            "failed": 0,
            "refused": 0,
            "abandoned": 0,
        }
        async with database.session(writes=False) as session:
            status = await session.scalar(
                select(Message.status).where(Message.org_id == tenant.org_id)
            )
        assert status == "delivered"
    finally:
        await database.dispose()
