"""GET /v1/compliance/revocations: timings and breaches, with a clock the test controls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agentmessage.kit.clock import clock
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from tests.fixtures.builders import Tenant
from tests.fixtures.edge_values import EDGE_TIMES
from tests.messaging.helpers import reply

T = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)  # a Monday


async def test_report_counts_every_breach(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, dispatcher: Dispatcher
) -> None:
    with clock.frozen(T):
        await reply(client, tenant, "STOP", "+15554440001")
        await reply(client, tenant, "Stop texting me please", "+15554440002")
    with clock.frozen(T + timedelta(minutes=1)):
        await dispatcher.run_once()  # both confirmations... but see below
    with clock.frozen(T + timedelta(minutes=1)):
        await reply(client, tenant, "No más mensajes", "+15554440003")
    with clock.frozen(T + timedelta(minutes=9)):
        await dispatcher.run_once()  # the third one's is too late: skipped
    with clock.frozen(T + timedelta(days=1)):
        # Received by email three weeks before it was recorded: honored late.
        late = {"contact_number": "+15554440004", "channel": "email",
                "received_at": "2026-10-26T12:00:00Z"}  # fmt: skip
        on_time = {"contact_number": "+15554440005", "channel": "voice",
                   "received_at": "2026-11-16T12:00:00Z"}  # fmt: skip
        for body in (late, on_time):
            r = await client.post("/v1/consent/revocations", json=body, headers=tenant.headers)
            assert r.status_code == 201, r.text

    response = await client.get(
        "/v1/compliance/revocations",
        params={"from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    report = response.json()
    rows = {row["contact_number"]: row for row in report["data"]}
    assert report["summary"] == {
        "revocations": 5,
        "by_channel": {"email": 1, "sms": 3, "voice": 1},
        "breaches": {"honored_late": 1, "confirmation_late": 1},
        "truncated": False,
    }
    stop = rows["+15554440001"]
    assert (stop["channel"], stop["reason"], stop["breaches"]) == ("sms", "keyword:STOP", [])
    assert stop["confirmation"]["status"] == "delivered"
    assert stop["confirmation"]["sent_at"] == "2026-11-16T15:01:00Z"
    assert rows["+15554440002"]["reason"] == "phrase:stop_texting_me"
    skipped = rows["+15554440003"]
    assert skipped["confirmation"]["status"] == "skipped_late"
    assert skipped["breaches"] == ["confirmation_late"]
    emailed = rows["+15554440004"]
    assert (emailed["honor_by"], emailed["breaches"]) == ("2026-11-09", ["honored_late"])
    assert emailed["confirmation"] is None
    assert rows["+15554440005"]["breaches"] == []
    assert rows["+15554440005"]["delay_seconds"] == 24 * 3600 + 3 * 3600

    theirs = await client.get(
        "/v1/compliance/revocations",
        params={"from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=other_tenant.headers,
    )
    assert theirs.json()["data"] == []


async def test_bad_periods_are_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for params, field in (
        ({"from": "2026-12-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
        ({"from": "last week", "to": "2026-11-01T00:00:00Z"}, "from"),
        ({"to": "2026-11-01T00:00:00Z"}, "from"),
    ):
        response = await client.get(
            "/v1/compliance/revocations", params=params, headers=tenant.headers
        )
        assert response.status_code == 422, params
        assert field in response.json()["error"]["details"], response.json()


@pytest.mark.parametrize("field", ["from", "to"])
@pytest.mark.parametrize(("value", "reason"), EDGE_TIMES)
async def test_a_period_end_out_of_range_or_before_1992_is_422_naming_it(
    client: httpx.AsyncClient, tenant: Tenant, field: str, value: str, reason: str
) -> None:
    params = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", field: value}
    response = await client.get("/v1/compliance/revocations", params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_FAILED", {field: reason})
