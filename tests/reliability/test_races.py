"""Races with real commits (issue 7, item 3): many requests at once against a database
of their own. On PostgreSQL they truly overlap (row locks, unique indexes, insert-or-
ignore); SQLite serialises its writers, and the guarantees must hold there too.

Every test ends by reading the database itself, not only the answers: one record per
contact, exactly the history events its final state implies, one leaf per event.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from agentmessage.app import create_app
from agentmessage.db.engine import Database
from agentmessage.db.models import (
    Challenge,
    ConsentEvent,
    ConsentRecord,
    IdempotencyKey,
    LogLeaf,
    Message,
)
from agentmessage.kit.clock import utcnow
from agentmessage.kit.timefmt import format_rfc3339
from tests.fixtures.builders import Tenant, capture_body, make_tenant
from tests.reliability.conftest import client_for

CONCURRENCY = 50
AGREEMENT = (
    "By replying YES you agree to receive appointment reminders from Agentmessage. "
    "Msg & data rates may apply. Reply STOP to opt out."
)


async def new_tenant(database: Database) -> Tenant:
    async with database.session(writes=True) as session:
        return await make_tenant(session, plan="growth")


async def rows(database: Database, model: Any, tenant: Tenant) -> list[Any]:
    async with database.session(writes=False) as session:
        found = await session.scalars(
            select(model)
            .where(model.org_id == tenant.org_id)
            .order_by(*model.__table__.primary_key.columns)
        )
        return list(found)


async def assert_log_is_whole(database: Database, tenant: Tenant) -> None:
    """Each history event is one leaf of the proof log, none twice, none missing."""
    events = await rows(database, ConsentEvent, tenant)
    async with database.session(writes=False) as session:
        leaves = list(
            await session.scalars(select(LogLeaf.event_id).where(LogLeaf.org_id == tenant.org_id))
        )
    assert sorted(leaves) == sorted(e.id for e in events)


def assert_consistent(record: ConsentRecord, events: list[ConsentEvent]) -> None:
    """The record is what its history says: the latest event set its state."""
    assert events, "a record without a history event"
    latest = events[-1]  # ids are UUIDv7: history order
    assert record.opted_in is (latest.type == "opt_in")
    if record.opted_in:
        assert record.opted_in_at == latest.occurred_at
    else:
        assert record.opted_out_at == latest.occurred_at
    # Never two events in a row that change nothing: each one is a real change.
    types = [e.type for e in events]
    assert all(a != b or reason_allows_repeat(e) for a, b, e in zip(types, types[1:], events[1:]))


def reason_allows_repeat(event: ConsentEvent) -> bool:
    # A capture may record the same state again with new evidence (SPEC: capturing
    # again appends an event); keyword replies and DELETE never repeat a state.
    return event.reason.startswith("api:capture")


# -- One Idempotency-Key, fifty at once ---------------------------------------------------


async def test_fifty_identical_posts_with_one_idempotency_key_have_one_effect(database, settings):
    tenant = await new_tenant(database)
    body = capture_body(tenant)
    headers = {**tenant.headers, "Idempotency-Key": "race-1"}
    async with client_for(create_app(settings, database)) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/consent", json=body, headers=headers) for _ in range(CONCURRENCY))
        )
        # Once every request is over, a retry replays the stored answer.
        replay = await client.post("/v1/consent", json=body, headers=headers)

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code >= 500]
    done = [r for r in responses if r.status_code == 201]
    assert done, "no request finished"
    assert sum("idempotent-replayed" not in r.headers for r in done) == 1
    assert len({r.content for r in done}) == 1  # replays are byte-identical
    for conflict in (r for r in responses if r.status_code == 409):
        error = conflict.json()["error"]
        assert error["code"] == "IDEMPOTENCY_IN_PROGRESS"
        assert error["request_id"] == conflict.headers["x-request-id"]
        assert conflict.headers["retry-after"] == "1"
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == done[0].content

    (record,) = await rows(database, ConsentRecord, tenant)
    (event,) = await rows(database, ConsentEvent, tenant)
    assert str(record.id) == done[0].json()["id"] and event.consent_id == record.id
    (key,) = await rows(database, IdempotencyKey, tenant)
    assert (key.state, key.response_status) == ("done", 201)
    await assert_log_is_whole(database, tenant)


# -- Double opt-in: fifty requests, one SMS -----------------------------------------------


async def test_fifty_concurrent_double_opt_ins_for_one_contact_send_exactly_one_sms(
    database, settings
):
    tenant = await new_tenant(database)
    body = {
        "phone_number_id": tenant.phone_number_id,
        "contact_number": "+15554443333",
        "agreement_text": AGREEMENT,
    }
    async with client_for(create_app(settings, database)) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/consent/double-opt-in", json=body, headers=tenant.headers)
                for _ in range(CONCURRENCY)
            )
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: 1, 200: CONCURRENCY - 1}, [
        r.text for r in responses if r.status_code >= 300
    ]
    answers = [r.json() for r in responses]
    assert len({a["consent_pending_id"] for a in answers}) == 1
    assert len({a["confirmation_message_id"] for a in answers}) == 1
    (challenge,) = await rows(database, Challenge, tenant)
    (sms,) = await rows(database, Message, tenant)
    assert (challenge.state, challenge.message_id) == ("open", sms.id)
    assert (sms.direction, sms.to_number) == ("outbound", "+15554443333")
    # A challenge is not consent: nothing in the history yet.
    assert await rows(database, ConsentRecord, tenant) == []
    assert await rows(database, ConsentEvent, tenant) == []


# -- STOP and YES at once ------------------------------------------------------------------


async def inbound(client: httpx.AsyncClient, tenant: Tenant, contact: str, body: str) -> Any:
    r = await client.post(
        "/v1/sandbox/inbound",
        json={"from": contact, "to": tenant.number.number, "body": body},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_concurrent_stop_and_yes_end_opted_out_with_the_events_that_implies(
    database, settings
):
    """Whichever commits first, STOP is the contact's last word: YES first means an
    opt-in (challenge confirmed) then an opt-out; STOP first cancels the challenge
    and the YES confirms nothing. Twelve contacts race at once."""
    tenant = await new_tenant(database)
    contacts = [f"+1555777{n:04d}" for n in range(12)]
    async with client_for(create_app(settings, database)) as client:
        for contact in contacts:
            r = await client.post(
                "/v1/consent/double-opt-in",
                json={
                    "phone_number_id": tenant.phone_number_id,
                    "contact_number": contact,
                    "agreement_text": AGREEMENT,
                },
                headers=tenant.headers,
            )
            assert r.status_code == 202, r.text
        replies = [
            inbound(client, tenant, contact, word)
            for contact in contacts
            for word in ("YES", "STOP")
        ]
        await asyncio.gather(*replies)

    records = {r.contact_number: r for r in await rows(database, ConsentRecord, tenant)}
    events = await rows(database, ConsentEvent, tenant)
    challenges = {c.contact_number: c for c in await rows(database, Challenge, tenant)}
    outbound = Counter(
        (m.to_number, m.purpose)
        for m in await rows(database, Message, tenant)
        if m.direction == "outbound"
    )
    for contact in contacts:
        record = records[contact]
        history = [e for e in events if e.consent_id == record.id]
        assert_consistent(record, history)
        assert record.opted_in is False
        challenge = challenges[contact]
        reasons = [e.reason for e in history]
        if reasons == ["double_opt_in:YES", "keyword:STOP"]:
            assert challenge.state == "confirmed"
            assert challenge.consent_event_id == history[0].id
        else:
            assert reasons == ["keyword:STOP"]
            assert challenge.state == "canceled"
            assert challenge.consent_event_id is None
        # One challenge SMS and one opt-out confirmation, nothing else.
        assert outbound[(contact, "opt_out_confirmation")] == 1
        assert sum(n for (to, _), n in outbound.items() if to == contact) == 2
    assert len(records) == len(contacts)
    assert {e.consent_id for e in events} == {r.id for r in records.values()}
    await assert_log_is_whole(database, tenant)


# -- DELETE and capture at once -------------------------------------------------------------


async def test_concurrent_delete_and_capture_end_in_the_state_of_the_last_to_commit(
    database, settings
):
    """A record opted in; then DELETE and a newer opted-in capture race (twelve
    contacts at once). Either order is fine; what the record says must be the latest
    event, with exactly three events and one record per contact."""
    tenant = await new_tenant(database)
    contacts = [f"+1555888{n:04d}" for n in range(12)]
    later = format_rfc3339(utcnow() + timedelta(minutes=2))
    async with client_for(create_app(settings, database)) as client:
        ids: dict[str, str] = {}
        for contact in contacts:
            r = await client.post(
                "/v1/consent", json=capture_body(tenant, contact), headers=tenant.headers
            )
            assert r.status_code == 201, r.text
            ids[contact] = r.json()["id"]

        async def delete(contact: str) -> httpx.Response:
            return await client.delete(f"/v1/consent/{ids[contact]}", headers=tenant.headers)

        async def capture(contact: str) -> httpx.Response:
            body = capture_body(tenant, contact, captured_at=later)
            return await client.post("/v1/consent", json=body, headers=tenant.headers)

        pairs = await asyncio.gather(*(asyncio.gather(delete(c), capture(c)) for c in contacts))

    records = {r.contact_number: r for r in await rows(database, ConsentRecord, tenant)}
    events = await rows(database, ConsentEvent, tenant)
    assert len(records) == len(contacts)
    for contact, (deleted, captured) in zip(contacts, pairs, strict=True):
        assert (deleted.status_code, captured.status_code) == (200, 200), (
            deleted.text,
            captured.text,
        )
        record = records[contact]
        assert str(record.id) == ids[contact] == captured.json()["id"]
        history = [e for e in events if e.consent_id == record.id]
        assert_consistent(record, history)
        reasons = [e.reason for e in history]
        assert len(reasons) == 3 and reasons[0] == "api:capture", reasons
        assert sorted(reasons[1:]) == ["api:capture", "api:delete"]
        # The answer of whichever committed last is the record as it stands.
        last = captured if reasons[-1] == "api:capture" else deleted
        assert last.json()["opted_in"] is record.opted_in
    assert len(events) == 3 * len(contacts)
    await assert_log_is_whole(database, tenant)
