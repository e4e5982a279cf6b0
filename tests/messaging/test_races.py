"""Races, with real commits in a database of their own: a real race on PostgreSQL
(FOR UPDATE SKIP LOCKED, the partial unique index), serialised writers on SQLite."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agentmessage.app import create_app
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import Challenge, Message, MessageAttempt
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from agentmessage.messaging.service import enqueue
from tests.fixtures.builders import make_tenant
from tests.messaging.conftest import messaging_settings
from tests.messaging.helpers import CONTACT, challenge_body


async def test_twenty_concurrent_challenges_for_one_contact_send_exactly_one_sms(
    backend, database_url_factory, settings
):
    database = Database(create_engine(database_url_factory(backend), pool_size=20))
    try:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
        app = create_app(settings, database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/consent/double-opt-in",
                        json=challenge_body(tenant),
                        headers=tenant.headers,
                    )
                    for _ in range(20)
                )
            )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {202: 1, 200: 19}, [r.text for r in responses if r.status_code >= 300]
        bodies = [r.json() for r in responses]
        assert len({b["consent_pending_id"] for b in bodies}) == 1
        assert len({b["confirmation_message_id"] for b in bodies}) == 1
        assert sum(b["reused"] for b in bodies) == 19
        async with database.session(writes=False) as session:
            challenges = await session.scalar(
                select(func.count()).where(Challenge.org_id == tenant.org_id)
            )
            messages = await session.scalar(
                select(func.count()).where(Message.org_id == tenant.org_id)
            )
        assert (challenges, messages) == (1, 1)
    finally:
        await database.dispose()


async def test_two_dispatchers_racing_over_one_queue_never_send_a_message_twice(
    backend, database_url_factory, tmp_path, standin
):
    settings = messaging_settings(
        tmp_path, standin.url, sms_provider="twilio", dispatcher_batch_size=7
    )
    database = Database(create_engine(database_url_factory(backend)))
    dispatchers = [Dispatcher.from_settings(database, settings) for _ in range(2)]
    contacts = [f"+1555444{n:04d}" for n in range(40)]
    try:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
            for contact in contacts:
                await enqueue(session, tenant.org_id, tenant.number, contact, "Hello", "help")
            await session.commit()

        async def drain(dispatcher: Dispatcher) -> int:
            sent = 0
            for _ in range(20):  # bounded: 40 messages, 7 per pass
                report = await dispatcher.run_once()
                sent += report.sent
                if report.claimed == 0:
                    break
            return sent

        sent_by_each = await asyncio.gather(*(drain(d) for d in dispatchers))
        assert sum(sent_by_each) == len(contacts)
        assert standin.sends_to() == Counter(dict.fromkeys(contacts, 1))
        async with database.session(writes=False) as session:
            statuses = Counter(
                await session.scalars(select(Message.status).where(Message.org_id == tenant.org_id))
            )
            attempts = await session.scalar(
                select(func.count()).where(MessageAttempt.org_id == tenant.org_id)
            )
        assert statuses == {"sent": len(contacts)}
        assert attempts == len(contacts)
    finally:
        for dispatcher in dispatchers:
            await dispatcher.provider.aclose()
        await database.dispose()


async def test_the_partial_unique_index_refuses_a_second_open_challenge(
    backend, database_url_factory
):
    """The guarantee is the database's own, not only the service's."""
    database = Database(create_engine(database_url_factory(backend)))
    try:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)

            def row(state: str) -> Challenge:
                now = utcnow()
                return Challenge(
                    org_id=tenant.org_id,
                    id=new_id(),
                    phone_number_id=tenant.number.id,
                    contact_number=CONTACT,
                    state=state,
                    agreement_text="a",
                    confirmation_text="YES STOP HELP",
                    message_id=new_id(),
                    api_key_id=tenant.key_id,
                    created_at=now,
                    expires_at=now,
                )

            session.add_all([row("expired"), row("confirmed"), row("open")])
            await session.commit()
            session.add(row("open"))
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await database.dispose()
