"""POST /v1/consent/check and the stored decisions, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tests.fixtures.builders import Tenant, capture_body
from tests.fixtures.edge_values import EDGE_TIMES
from tests.messaging.helpers import start_challenge


@asynccontextmanager
async def statements_sent(connection: AsyncConnection) -> AsyncIterator[list[str]]:
    """Every statement the test's connection sends the database, whichever way:
    through SQLAlchemy, or (PostgreSQL) on the driver's connection, as the fast
    check does."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    def log(query: Any) -> None:
        sent.append(query.query)

    raw = (await connection.get_raw_connection()).driver_connection
    logs = connection.dialect.name == "postgresql"
    event.listen(connection.sync_engine, "before_cursor_execute", count)
    if logs:
        raw.add_query_logger(log)
    try:
        yield sent
    finally:
        event.remove(connection.sync_engine, "before_cursor_execute", count)
        if logs:
            raw.remove_query_logger(log)


async def check(
    client: httpx.AsyncClient, tenant: Tenant, contacts: list[str], **extra: Any
) -> dict[str, Any]:
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": contacts, **extra}
    response = await client.post("/v1/consent/check", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def capture(client: httpx.AsyncClient, tenant: Tenant, contact: str, **kw: Any) -> str:
    response = await client.post(
        "/v1/consent", json=capture_body(tenant, contact, **kw), headers=tenant.headers
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def test_every_reason_with_its_record(client: httpx.AsyncClient, tenant: Tenant) -> None:
    opted_in = await capture(client, tenant, "+15554440001")
    opted_out = await capture(client, tenant, "+15554440002")
    await client.delete(f"/v1/consent/{opted_out}", headers=tenant.headers)
    deactivated = await capture(client, tenant, "+15554440003")
    feed = {"deactivations": [{"number": "+15554440003", "deactivated_at": "2026-05-01"}]}
    assert (
        await client.post("/v1/deactivations", json=feed, headers=tenant.headers)
    ).status_code == 200
    assert (await start_challenge(client, tenant, "+15554440004")).status_code == 202

    contacts = ["+15554440001", "+15554440002", "+15554440003", "+15554440004",
                "+15554440005", "555-0100", "+1"]  # fmt: skip
    decision = await check(client, tenant, contacts)
    by_contact = {r["contact_number"]: r for r in decision["results"]}
    assert [r["contact_number"] for r in decision["results"]] == contacts
    assert {c: (r["allowed"], r["reason"]) for c, r in by_contact.items()} == {
        "+15554440001": (True, "opted_in"),
        "+15554440002": (False, "opted_out"),
        "+15554440003": (False, "number_deactivated"),
        "+15554440004": (False, "pending_confirmation"),
        "+15554440005": (False, "no_consent"),
        "555-0100": (False, "invalid_number"),
        "+1": (False, "invalid_number"),
    }
    first = by_contact["+15554440001"]
    assert first["consent_id"] == opted_in
    assert first["opted_in_at"] == "2026-04-26T12:00:00Z" and first["opted_out_at"] is None
    assert first["consent_method"] == "checkbox"
    assert by_contact["+15554440002"]["consent_id"] == opted_out
    assert by_contact["+15554440002"]["opted_out_at"] is not None
    assert by_contact["+15554440003"]["consent_id"] == deactivated
    # A date-only deactivation counts from the end of that day.
    assert by_contact["+15554440003"]["opted_out_at"] == "2026-05-01T23:59:59.999999Z"
    assert by_contact["+15554440005"]["consent_id"] is None


async def test_decision_is_stored_and_readable_only_by_its_organization(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await capture(client, tenant, "+15554440010")
    decision = await check(client, tenant, ["+15554440010", "nope"])
    stored = await client.get(
        f"/v1/consent/decisions/{decision['decision_id']}", headers=tenant.headers
    )
    assert stored.status_code == 200
    assert stored.json() == decision
    theirs = await client.get(
        f"/v1/consent/decisions/{decision['decision_id']}", headers=other_tenant.headers
    )
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "NOT_FOUND"
    # A later change does not rewrite what was answered then.
    await client.delete(
        f"/v1/consent/{decision['results'][0]['consent_id']}", headers=tenant.headers
    )
    again = await client.get(
        f"/v1/consent/decisions/{decision['decision_id']}", headers=tenant.headers
    )
    assert again.json()["results"][0]["reason"] == "opted_in"


async def test_a_batch_of_1000_is_one_decision_written_by_one_statement(
    client: httpx.AsyncClient, tenant: Tenant, connection: AsyncConnection
) -> None:
    for n in range(3):
        await capture(client, tenant, f"+1555444{n:04d}")
    contacts = [f"+1555444{n:04d}" for n in range(999)] + ["not a number"]
    async with statements_sent(connection) as statements:
        decision = await check(client, tenant, contacts)
    inserts = [s for s in statements if "INSERT INTO consent_decisions" in s]
    assert len(inserts) == 1
    reasons = [r["reason"] for r in decision["results"]]
    assert reasons[:3] == ["opted_in"] * 3
    assert reasons[3:999] == ["no_consent"] * 996
    assert reasons[999] == "invalid_number"


async def test_at_answers_from_history(client: httpx.AsyncClient, tenant: Tenant) -> None:
    consent_id = await capture(client, tenant, "+15554440020")  # captured 2026-04-26T12:00Z
    await client.delete(f"/v1/consent/{consent_id}", headers=tenant.headers)  # now
    before = await check(client, tenant, ["+15554440020"], at="2026-04-01T00:00:00Z")
    during = await check(client, tenant, ["+15554440020"], at="2026-05-01T00:00:00Z")
    now = await check(client, tenant, ["+15554440020"])
    assert before["results"][0]["reason"] == "no_consent"
    assert (during["results"][0]["allowed"], during["results"][0]["reason"]) == (True, "opted_in")
    assert during["results"][0]["opted_in_at"] == "2026-04-26T12:00:00Z"
    assert during["at"] == "2026-05-01T00:00:00Z"
    assert (now["results"][0]["allowed"], now["results"][0]["reason"]) == (False, "opted_out")


async def test_deactivation_answers_from_history_too(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await capture(client, tenant, "+15554440030")
    feed = {"deactivations": [{"number": "+15554440030", "deactivated_at": "2026-05-01"}]}
    await client.post("/v1/deactivations", json=feed, headers=tenant.headers)
    then = await check(client, tenant, ["+15554440030"], at="2026-05-02T00:00:00Z")
    assert then["results"][0]["reason"] == "number_deactivated"
    # A fresh opt-in after the deactivation counts again.
    await capture(client, tenant, "+15554440030", captured_at="2026-06-01T00:00:00Z")
    assert (await check(client, tenant, ["+15554440030"]))["results"][0]["reason"] == "opted_in"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contact_numbers": []}, "contact_numbers"),
        ({"contact_numbers": ["+15554440001"] * 1001}, "contact_numbers"),
        ({"contact_numbers": [5554440001]}, "contact_numbers[0]"),
        ({"contact_numbers": ["+15554440001"], "at": "yesterday"}, "at"),
        ({"contact_numbers": ["+15554440001"], "extra": 1}, "extra"),
    ],
)
async def test_bad_requests_are_422_and_store_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    session: AsyncSession,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(
        "/v1/consent/check",
        json={"phone_number_id": tenant.phone_number_id, **body},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"]
    count = await session.scalar(text("SELECT count(*) FROM consent_decisions"))
    assert count == 0


@pytest.mark.parametrize(("at", "reason"), EDGE_TIMES)
async def test_an_at_out_of_range_or_before_1992_is_422_naming_it_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession, at: str, reason: str
) -> None:
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    response = await client.post(
        "/v1/consent/check", json={**body, "at": at}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_FAILED", {"at": reason})
    count = await session.scalar(text("SELECT count(*) FROM consent_decisions"))
    assert count == 0


async def test_another_organizations_number_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = {"phone_number_id": other_tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    response = await client.post("/v1/consent/check", json=body, headers=tenant.headers)
    assert response.status_code == 404


async def test_decisions_are_append_only_in_the_database(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession
) -> None:
    await check(client, tenant, ["+15554440040"])
    for statement in ("UPDATE consent_decisions SET contacts = 0", "DELETE FROM consent_decisions"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.execute(text(statement))
