"""GET /v1/consent: seed 001 and SPEC.md "Listing"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.builders import capture_body, make_key, make_record
from tests.fixtures.edge_values import EDGE_TIMES, FIRST_ACCEPTED_TIMES

T0 = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)


async def test_anonymous_is_401(client):
    r = await client.get("/v1/consent")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


async def test_key_without_read_scope_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:write",))
    r = await client.get("/v1/consent", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"


async def test_unknown_malformed_and_revoked_keys_are_401(client, session, tenant):
    from agentmessage.auth.service import revoke_key

    odd = b"am_live_" + "é".encode("latin-1") * 40
    for bad in ("am_live_" + "x" * 43, "am_test_" + "x" * 43, "am_live_short", "", odd):
        value = b"Bearer " + bad if isinstance(bad, bytes) else f"Bearer {bad}"
        r = await client.get("/v1/consent", headers={"Authorization": value})
        assert r.status_code == 401, bad
    r = await client.get("/v1/consent", headers={"Authorization": tenant.key})  # no "Bearer"
    assert r.status_code == 401
    await revoke_key(session, org_id=tenant.org_id, key_id=tenant.key_id)
    await session.commit()
    r = await client.get("/v1/consent", headers=tenant.headers)
    assert r.status_code == 401


async def test_empty_list_has_the_seed_envelope(client, tenant):
    r = await client.get("/v1/consent", headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "data": [],
        "meta": {"total": 0, "limit": 20, "offset": 0, "next_cursor": None},
    }


async def test_records_come_newest_change_first(client, session, tenant):
    for minutes in (5, 1, 9, 3):
        await make_record(session, tenant, updated_at=T0 + timedelta(minutes=minutes))
    await session.commit()
    r = await client.get("/v1/consent", headers=tenant.headers)
    stamps = [record["updated_at"] for record in r.json()["data"]]
    assert stamps == [
        "2026-04-26T12:09:00Z",
        "2026-04-26T12:05:00Z",
        "2026-04-26T12:03:00Z",
        "2026-04-26T12:01:00Z",
    ]


async def test_ties_on_updated_at_are_broken_by_id_descending(client, session, tenant):
    ids = [str((await make_record(session, tenant, updated_at=T0)).id) for _ in range(5)]
    await session.commit()
    r = await client.get("/v1/consent", params={"limit": 2}, headers=tenant.headers)
    seen = [x["id"] for x in r.json()["data"]]
    cursor = r.json()["meta"]["next_cursor"]
    while cursor:
        r = await client.get(
            "/v1/consent", params={"limit": 2, "cursor": cursor}, headers=tenant.headers
        )
        seen += [x["id"] for x in r.json()["data"]]
        cursor = r.json()["meta"]["next_cursor"]
    assert seen == sorted(ids, reverse=True)


async def test_pages_report_total_offset_limit_and_cursor(client, session, tenant):
    for i in range(7):
        await make_record(session, tenant, updated_at=T0 + timedelta(seconds=i))
    await session.commit()
    first = (await client.get("/v1/consent?limit=3", headers=tenant.headers)).json()
    assert first["meta"]["total"] == 7
    assert first["meta"]["offset"] == 0
    assert first["meta"]["limit"] == 3
    second = (
        await client.get(
            "/v1/consent",
            params={"limit": 3, "cursor": first["meta"]["next_cursor"]},
            headers=tenant.headers,
        )
    ).json()
    assert second["meta"]["offset"] == 3
    last = (
        await client.get(
            "/v1/consent",
            params={"limit": 3, "cursor": second["meta"]["next_cursor"]},
            headers=tenant.headers,
        )
    ).json()
    assert last["meta"] == {"total": 7, "limit": 3, "offset": 6, "next_cursor": None}
    assert len(last["data"]) == 1


async def test_a_cursor_walk_sees_every_record_once_while_records_are_inserted(
    client, session, tenant
):
    existing = set()
    for i in range(25):
        record = await make_record(session, tenant, updated_at=T0 + timedelta(seconds=i))
        existing.add(str(record.id))
    await session.commit()
    seen: list[str] = []
    cursor = None
    inserted = 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/consent", params=params, headers=tenant.headers)).json()
        # The offset counts what this walk has passed, whatever arrived meanwhile.
        assert page["meta"]["offset"] == len(seen)
        seen += [x["id"] for x in page["data"]]
        # Between pages, new consents arrive through the API.
        r = await client.post(
            "/v1/consent",
            json=capture_body(tenant, f"+1555777{inserted:04d}"),
            headers=tenant.headers,
        )
        assert r.status_code == 201
        inserted += 1
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(seen) == existing
    final = (await client.get("/v1/consent", headers=tenant.headers)).json()
    assert final["meta"]["total"] == 25 + inserted


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"opted_in": "true"}, {"a", "c"}),
        ({"opted_in": "false"}, {"b", "d"}),
        ({"consent_method": "written"}, {"c", "d"}),
        ({"contact_number": "+15550000002"}, {"b"}),
        ({"since": "2026-04-26T12:02:00Z"}, {"c", "d"}),
        ({"since": "2026-04-26T14:02:00+02:00"}, {"c", "d"}),
        ({"opted_in": "true", "consent_method": "written"}, {"c"}),
    ],
)
async def test_filters(client, session, tenant, params, expected):
    rows = {
        "a": ("+15550000001", True, "checkbox", 0),
        "b": ("+15550000002", False, "checkbox", 1),
        "c": ("+15550000003", True, "written", 2),
        "d": ("+15550000004", False, "written", 3),
    }
    by_id = {}
    for name, (number, opted_in, method, minute) in rows.items():
        record = await make_record(
            session,
            tenant,
            contact_number=number,
            opted_in=opted_in,
            consent_method=method,
            updated_at=T0 + timedelta(minutes=minute),
        )
        by_id[str(record.id)] = name
    await session.commit()
    r = await client.get("/v1/consent", params=params, headers=tenant.headers)
    assert r.status_code == 200
    assert {by_id[x["id"]] for x in r.json()["data"]} == expected
    assert r.json()["meta"]["total"] == len(expected)


async def test_phone_number_filter(client, session, tenant):
    from agentmessage.orgs.service import create_phone_number

    second = await create_phone_number(session, org_id=tenant.org_id, number="+15550109999")
    await make_record(session, tenant)
    mine = await make_record(session, tenant, phone_number_id=second.id)
    await session.commit()
    r = await client.get(
        "/v1/consent", params={"phone_number_id": str(second.id)}, headers=tenant.headers
    )
    assert [x["id"] for x in r.json()["data"]] == [str(mine.id)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"opted_in": "maybe"}, "opted_in"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-04-26T12:00:00"}, "since"),
        ({"consent_method": "telepathy"}, "consent_method"),
        ({"phone_number_id": "not-a-uuid"}, "phone_number_id"),
        ({"contact_number": "5550000001"}, "contact_number"),
        ({"contact_number": "' OR 1=1 --"}, "contact_number"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
async def test_bad_query_values_are_422_with_details(client, tenant, params, field):
    r = await client.get("/v1/consent", params=params, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert field in r.json()["error"]["details"]


@pytest.mark.parametrize(("since", "reason"), EDGE_TIMES)
async def test_a_since_out_of_range_or_before_1992_is_422_naming_it(client, tenant, since, reason):
    r = await client.get("/v1/consent", params={"since": since}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_FAILED", {"since": reason})
    assert error["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("since", FIRST_ACCEPTED_TIMES)
async def test_since_the_first_moment_of_1992_lists_everything(client, session, tenant, since):
    await make_record(session, tenant, updated_at=T0)
    await session.commit()
    r = await client.get("/v1/consent", params={"since": since}, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["meta"]["total"] == 1


async def _second_page_cursor(client, session, tenant, **params):
    for i in range(3):
        await make_record(session, tenant, updated_at=T0 + timedelta(seconds=i))
    await session.commit()
    r = await client.get("/v1/consent", params={"limit": 1, **params}, headers=tenant.headers)
    return r.json()["meta"]["next_cursor"]


async def test_a_tampered_cursor_is_422(client, session, tenant):
    cursor = await _second_page_cursor(client, session, tenant)
    body, mac = cursor.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{flipped}.{mac}", f"{body}.{mac[:-1]}", body, cursor + "x"):
        r = await client.get("/v1/consent", params={"cursor": bad}, headers=tenant.headers)
        assert r.status_code == 422, bad
        assert r.json()["error"]["details"] == {"cursor": "is not a valid cursor"}


async def test_a_cursor_is_bound_to_its_filters(client, session, tenant):
    cursor = await _second_page_cursor(client, session, tenant, opted_in="true")
    r = await client.get(
        "/v1/consent", params={"cursor": cursor, "opted_in": "false"}, headers=tenant.headers
    )
    assert r.status_code == 422
    assert "different query" in r.json()["error"]["details"]["cursor"]


async def test_a_cursor_of_another_organization_is_refused(client, session, tenant, other_tenant):
    cursor = await _second_page_cursor(client, session, tenant)
    r = await client.get("/v1/consent", params={"cursor": cursor}, headers=other_tenant.headers)
    assert r.status_code == 422


async def test_another_organizations_records_never_show(client, session, tenant, other_tenant):
    await make_record(session, other_tenant, contact_number="+15550000001")
    mine = await make_record(session, tenant, contact_number="+15550000001")
    await session.commit()
    for params in ({}, {"contact_number": "+15550000001"}, {"opted_in": "true"}):
        r = await client.get("/v1/consent", params=params, headers=tenant.headers)
        assert [x["id"] for x in r.json()["data"]] == [str(mine.id)]
        assert r.json()["meta"]["total"] == 1
    r = await client.get(
        "/v1/consent",
        params={"phone_number_id": other_tenant.phone_number_id},
        headers=tenant.headers,
    )
    assert r.json()["data"] == []
