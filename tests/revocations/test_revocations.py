"""POST /v1/consent/revocations and the FCC clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.kit.clock import clock
from agentmessage.orgs.service import create_phone_number
from agentmessage.revocations.clock import honor_by
from tests.fixtures.builders import Tenant, capture_body
from tests.fixtures.edge_values import EDGE_TIMES

CONTACT = "+15554443333"


@pytest.mark.parametrize(
    ("received", "deadline"),
    [
        # Wednesday before Thanksgiving (Thu 26th): Friday counts, Thursday does not.
        ("2026-11-25T15:00:00Z", date(2026, 12, 10)),
        # Friday July 3rd 2026 is Independence Day observed; the weekend after it too.
        ("2026-07-02T15:00:00Z", date(2026, 7, 17)),
        ("2026-07-03T15:00:00Z", date(2026, 7, 17)),
        # An ordinary Monday: two weeks later.
        ("2026-03-02T09:00:00Z", date(2026, 3, 16)),
        # Christmas and New Year's Day in the window.
        ("2026-12-23T09:00:00Z", date(2027, 1, 8)),
    ],
)
def test_honor_by_is_the_tenth_business_day_after_receipt(received: str, deadline: date) -> None:
    assert honor_by(datetime.fromisoformat(received)) == deadline


async def revoke(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> httpx.Response:
    payload = {"contact_number": CONTACT, "channel": "email", "received_at": "2026-11-20T15:00:00Z"}
    return await client.post(
        "/v1/consent/revocations", json={**payload, **body}, headers=tenant.headers
    )


async def check(client: httpx.AsyncClient, tenant: Tenant, number_id: str) -> str:
    body = {"phone_number_id": number_id, "contact_numbers": [CONTACT]}
    response = await client.post("/v1/consent/check", json=body, headers=tenant.headers)
    reason: str = response.json()["results"][0]["reason"]
    return reason


async def test_an_emailed_revocation_opts_out_at_once_with_the_clock(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    with clock.frozen(datetime(2026, 11, 27, 10, 0, tzinfo=UTC)):
        captured = await client.post(
            "/v1/consent", json=capture_body(tenant, CONTACT), headers=tenant.headers
        )
        consent_id = captured.json()["id"]
        response = await revoke(
            client,
            tenant,
            phone_number_id=tenant.phone_number_id,
            text="Stop texting me.",
            received_at="2026-11-25T15:00:00Z",
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["received_at"], body["honored_at"], body["honor_by"]) == (
        "2026-11-25T15:00:00Z", "2026-11-27T10:00:00Z", "2026-12-10"
    )  # fmt: skip
    assert body["numbers"] == [
        {
            "phone_number_id": tenant.phone_number_id,
            "phone_number": tenant.number.number,
            "consent_id": consent_id,
            "action": "opted_out",
            "event_id": body["numbers"][0]["event_id"],
        }
    ]
    assert await check(client, tenant, tenant.phone_number_id) == "opted_out"
    history = await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)
    last = history.json()["data"][-1]
    assert (last["type"], last["source"], last["reason"]) == ("opt_out", "api", "revocation:email")
    assert last["occurred_at"] == "2026-11-25T15:00:00Z"
    assert last["evidence"] == {
        "channel": "email",
        "received_at": "2026-11-25T15:00:00Z",
        "honored_at": "2026-11-27T10:00:00Z",
        "honor_by": "2026-12-10",
        "text": "Stop texting me.",
    }
    with clock.frozen(datetime(2026, 11, 27, 11, 0, tzinfo=UTC)):
        again = await revoke(client, tenant, phone_number_id=tenant.phone_number_id)
    assert again.status_code == 201, again.text
    assert again.json()["numbers"][0]["action"] == "already_opted_out"
    assert (
        len(
            (await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)).json()[
                "data"
            ]
        )
        == 2
    )


async def test_without_a_number_it_revokes_for_every_number(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession
) -> None:
    second = await create_phone_number(session, org_id=tenant.org_id, number="+15550109999")
    await session.commit()
    await client.post("/v1/consent", json=capture_body(tenant, CONTACT), headers=tenant.headers)
    response = await revoke(client, tenant, channel="voice")
    assert response.status_code == 201, response.text
    actions = {n["phone_number"]: n["action"] for n in response.json()["numbers"]}
    assert actions == {tenant.number.number: "opted_out", "+15550109999": "opted_out"}
    assert await check(client, tenant, tenant.phone_number_id) == "opted_out"
    # The number the contact never opted in on now holds the revocation too: an
    # older opt-in cannot be imported over it.
    assert await check(client, tenant, str(second.id)) == "opted_out"
    stale = capture_body(tenant, CONTACT, captured_at="2026-11-01T00:00:00Z")
    stale["phone_number_id"] = str(second.id)
    refused = await client.post("/v1/consent", json=stale, headers=tenant.headers)
    assert refused.status_code == 422


@pytest.mark.parametrize("channel", ["email", "voice", "web", "in_person", "agent", "other"])
async def test_every_channel(client: httpx.AsyncClient, tenant: Tenant, channel: str) -> None:
    response = await revoke(client, tenant, channel=channel)
    assert response.status_code == 201
    assert response.json()["channel"] == channel


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "carrier_pigeon"}, "channel"),
        ({"received_at": "2999-01-01T00:00:00Z"}, "received_at"),
        ({"received_at": "yesterday"}, "received_at"),
        ({"contact_number": "555-0100"}, "contact_number"),
        ({"text": "x" * 4001}, "text"),
    ],
)
async def test_bad_revocations_are_422_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = await revoke(client, tenant, **body)
    assert response.status_code == 422
    assert field in response.json()["error"]["details"]
    assert await check(client, tenant, tenant.phone_number_id) == "no_consent"


async def test_another_organizations_number_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await revoke(client, tenant, phone_number_id=other_tenant.phone_number_id)
    assert response.status_code == 404


@pytest.mark.parametrize(("received_at", "reason"), EDGE_TIMES)
async def test_a_receipt_out_of_range_or_before_1992_is_422_naming_it_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, received_at: str, reason: str
) -> None:
    response = await revoke(client, tenant, received_at=received_at)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_FAILED", {"received_at": reason})
    assert await check(client, tenant, tenant.phone_number_id) == "no_consent"


async def test_a_revocation_received_before_the_opt_in_cannot_end_that_consent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    given = capture_body(tenant, CONTACT, captured_at="2026-11-22T09:00:00Z")
    with clock.frozen(datetime(2026, 11, 27, 10, 0, tzinfo=UTC)):
        captured = await client.post("/v1/consent", json=given, headers=tenant.headers)
        response = await revoke(
            client,
            tenant,
            phone_number_id=tenant.phone_number_id,
            received_at="2026-11-20T15:00:00Z",
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {
        "received_at": "is before the contact opted in at 2026-11-22T09:00:00Z; "
        "an opt-out dated before that consent cannot end it"
    }
    assert await check(client, tenant, tenant.phone_number_id) == "opted_in"
    record = await client.get(f"/v1/consent/{captured.json()['id']}", headers=tenant.headers)
    assert record.json() == captured.json()


async def test_for_every_number_a_later_consent_stands_and_the_rest_are_opted_out(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession
) -> None:
    second = await create_phone_number(session, org_id=tenant.org_id, number="+15550109998")
    await session.commit()
    older = capture_body(tenant, CONTACT, captured_at="2026-11-02T09:00:00Z")
    later = {**capture_body(tenant, CONTACT, captured_at="2026-11-22T09:00:00Z"),
             "phone_number_id": str(second.id)}  # fmt: skip
    with clock.frozen(datetime(2026, 11, 27, 10, 0, tzinfo=UTC)):
        for body in (older, later):
            assert (await client.post("/v1/consent", json=body, headers=tenant.headers)).is_success
        response = await revoke(client, tenant, received_at="2026-11-20T15:00:00Z")
    assert response.status_code == 201, response.text
    actions = {n["phone_number"]: n["action"] for n in response.json()["numbers"]}
    assert actions == {tenant.number.number: "opted_out", "+15550109998": "kept_later_consent"}
    kept = next(n for n in response.json()["numbers"] if n["phone_number"] == "+15550109998")
    assert kept["event_id"] is None and kept["consent_id"] is not None
    assert await check(client, tenant, tenant.phone_number_id) == "opted_out"
    assert await check(client, tenant, str(second.id)) == "opted_in"
