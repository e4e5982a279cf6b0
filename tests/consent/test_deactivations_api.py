"""POST /v1/deactivations: the caller's own feed, its organization only."""

from __future__ import annotations

import pytest

from tests.fixtures.builders import capture_body, make_key
from tests.fixtures.edge_values import EDGE_TIMES, TOO_EARLY


async def test_anonymous_is_401(client):
    r = await client.post("/v1/deactivations", json={"deactivations": []})
    assert r.status_code == 401


async def test_missing_scope_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read",))
    r = await client.post(
        "/v1/deactivations",
        json={"deactivations": [{"number": "+15554443333", "deactivated_at": "2026-04-20"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403


async def test_older_opt_ins_of_the_callers_organization_only_are_opted_out(
    client, tenant, other_tenant
):
    for who in (tenant, other_tenant):
        body = capture_body(who, "+15554443333", captured_at="2026-04-01T12:00:00Z")
        assert (await client.post("/v1/consent", json=body, headers=who.headers)).status_code == 201
    newer = capture_body(tenant, "+15554443334", captured_at="2026-04-25T12:00:00Z")
    await client.post("/v1/consent", json=newer, headers=tenant.headers)

    r = await client.post(
        "/v1/deactivations",
        json={
            "deactivations": [
                {"number": "+15554443333", "deactivated_at": "2026-04-20"},
                {"number": "+15554443334", "deactivated_at": "2026-04-20T08:30:00Z"},
                {"number": "+15559999999", "deactivated_at": "2026-04-20"},
            ]
        },
        headers=tenant.headers,
    )
    assert r.status_code == 200
    assert r.json() == {"received": 3, "opted_out": 1}

    mine = await client.get(
        "/v1/consent", params={"contact_number": "+15554443333"}, headers=tenant.headers
    )
    record = mine.json()["data"][0]
    assert record["opted_in"] is False
    assert record["source"] == "system"
    assert record["consent_method"] == "checkbox"
    assert record["opted_out_at"] == "2026-04-20T23:59:59.999999Z"
    history = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    last = history.json()["data"][-1]
    assert last["reason"] == "number_deactivated"
    assert last["evidence"]["deactivated_at"] == "2026-04-20T23:59:59.999999Z"

    theirs = await client.get(
        "/v1/consent", params={"contact_number": "+15554443333"}, headers=other_tenant.headers
    )
    assert theirs.json()["data"][0]["opted_in"] is True


async def test_bad_entries_are_422_naming_them_and_change_nothing(client, tenant):
    await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    r = await client.post(
        "/v1/deactivations",
        json={
            "deactivations": [
                {"number": "+15554443333", "deactivated_at": "2026-04-20"},
                {"number": "555", "deactivated_at": "2026-04-20"},
                {"number": "+15554443333", "deactivated_at": "yesterday"},
            ]
        },
        headers=tenant.headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {
        "deactivations[1].number": "must be E.164",
        "deactivations[2].deactivated_at": "must be a date (2026-04-20) or an RFC 3339 date-time",
    }
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["data"][0]["opted_in"] is True
    r = await client.post("/v1/deactivations", json={"deactivations": []}, headers=tenant.headers)
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("deactivated_at", "reason"),
    [*EDGE_TIMES, ("1991-12-31", TOO_EARLY), ("0001-01-01", TOO_EARLY)],
)
async def test_a_time_out_of_range_or_before_1992_is_422_naming_it_and_changes_nothing(
    client, tenant, deactivated_at, reason
):
    await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    r = await client.post(
        "/v1/deactivations",
        json={
            "deactivations": [
                {"number": "+15554443333", "deactivated_at": "2026-04-30"},
                {"number": "+15554443333", "deactivated_at": deactivated_at},
            ]
        },
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"] == {"deactivations[1].deactivated_at": reason}
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["data"][0]["opted_in"] is True
