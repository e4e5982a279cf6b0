"""Concurrent submits of one form record exactly one event (real commits, a database
of their own: a real race on PostgreSQL, serialised writers on SQLite)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from agentmessage.app import create_app
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import ConsentEvent, HostedForm
from tests.fixtures.builders import make_tenant
from tests.hosted.forms import csrf_of, mint, page_path


async def test_concurrent_submits_of_one_form_record_exactly_one_event(
    backend, database_url_factory, settings
):
    database = Database(create_engine(database_url_factory(backend)))
    try:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
        app = create_app(settings, database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            minted = await mint(client, tenant)
            page = await client.get(page_path(minted["token"]))
            data = {"csrf": csrf_of(page), "agree": "yes"}
            responses = await asyncio.gather(
                *(client.post(page_path(minted["token"]), data=data) for _ in range(12))
            )
        assert {r.status_code for r in responses} == {200}
        assert sum("<h1>Thank you</h1>" in r.text for r in responses) == 1
        assert sum("<h1>Already recorded</h1>" in r.text for r in responses) == 11
        async with database.session(writes=False) as session:
            events = await session.scalar(
                select(func.count()).where(ConsentEvent.org_id == tenant.org_id)
            )
            form = await session.scalar(
                select(HostedForm).where(HostedForm.org_id == tenant.org_id)
            )
            event_ids = list(
                await session.scalars(
                    select(ConsentEvent.id).where(ConsentEvent.org_id == tenant.org_id)
                )
            )
        assert events == 1
        assert form.submitted_at is not None
        assert form.consent_event_id == event_ids[0]
    finally:
        await database.dispose()
