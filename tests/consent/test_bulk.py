"""POST /v1/consent/bulk: seed 004."""

from __future__ import annotations

import copy
import uuid

import pytest

from agentmessage.db.models import PhoneNumber
from agentmessage.kit.clock import utcnow
from tests.consent.test_capture import SEED_PLAN_MESSAGE
from tests.fixtures.builders import capture_body, make_key, make_tenant
from tests.fixtures.edge_values import EDGE_TIMES, INVISIBLE_TEXTS

SEED_BODY = {
    "records": [
        {
            "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
            "contact_number": "+15554443333",
            "opted_in": True,
            "evidence": {
                "captured_at": "2026-04-26T12:00:00Z",
                "ip_address": "203.0.113.42",
                "user_agent": "Mozilla/5.0",
                "agreement_text": "By signing up you agree to receive appointment reminders. "
                "Reply STOP to opt out.",
                "form_url": "https://example.com/signup",
                "consent_method": "checkbox",
            },
        },
        {
            "phone_number_id": "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e",
            "contact_number": "+15554443334",
            "opted_in": True,
            "evidence": {
                "captured_at": "2026-04-26T12:00:01Z",
                "ip_address": "",
                "user_agent": "Mozilla/5.0",
                "agreement_text": "By signing up you agree to receive appointment reminders. "
                "Reply STOP to opt out.",
                "form_url": "https://example.com/signup",
                "consent_method": "checkbox",
            },
        },
    ]
}


def records(tenant, count, *, start=0, **evidence):
    return [capture_body(tenant, f"+1555{start + i:07d}", **evidence) for i in range(count)]


async def _total(client, tenant, **params):
    r = await client.get("/v1/consent", params=params, headers=tenant.headers)
    return r.json()["meta"]["total"]


async def test_anonymous_is_401(client):
    r = await client.post("/v1/consent/bulk", json=SEED_BODY)
    assert r.status_code == 401


async def test_key_without_write_scope_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read",))
    r = await client.post(
        "/v1/consent/bulk", json=SEED_BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"


async def test_the_seed_example_gives_the_seed_answer(client, session, tenant):
    # The seed's phone number id, made a sender number of this organization.
    session.add(
        PhoneNumber(
            org_id=tenant.org_id,
            id=uuid.UUID("7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e"),
            number="+15550109998",
            created_at=utcnow(),
        )
    )
    await session.commit()
    r = await client.post("/v1/consent/bulk", json=SEED_BODY, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 1,
        "rejected": [
            {
                "index": 1,
                "code": "VALIDATION_FAILED",
                "reason": "evidence.ip_address: must be a valid IP address",
            }
        ],
    }
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert [x["contact_number"] for x in listed.json()["data"]] == ["+15554443333"]


async def test_a_thousand_records_are_accepted_with_one_event_each(client, tenant):
    r = await client.post(
        "/v1/consent/bulk", json={"records": records(tenant, 1000)}, headers=tenant.headers
    )
    assert r.status_code == 200
    assert r.json() == {"accepted": 1000, "rejected": []}
    assert await _total(client, tenant) == 1000
    page = await client.get("/v1/consent", params={"limit": 1}, headers=tenant.headers)
    record = page.json()["data"][0]
    history = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    assert [e["reason"] for e in history.json()["data"]] == ["api:capture"]


async def test_every_record_is_judged_on_its_own(client, session, tenant, other_tenant):
    batch = records(tenant, 6)
    batch[1]["contact_number"] = "555"
    batch[2]["phone_number_id"] = other_tenant.phone_number_id
    batch[3]["phone_number_id"] = "497f6eca-6276-4993-bfeb-53cbbbba6f08"
    batch[4] = "not an object"
    del batch[5]["evidence"]["agreement_text"]
    batch[5]["evidence"]["ip_address"] = "1.2.3"
    r = await client.post("/v1/consent/bulk", json={"records": batch}, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 1,
        "rejected": [
            {"index": 1, "code": "VALIDATION_FAILED", "reason": "contact_number: must be E.164"},
            {"index": 2, "code": "NOT_FOUND", "reason": "phone_number_id: not found"},
            {"index": 3, "code": "NOT_FOUND", "reason": "phone_number_id: not found"},
            {"index": 4, "code": "VALIDATION_FAILED", "reason": "record: must be an object"},
            {
                "index": 5,
                "code": "VALIDATION_FAILED",
                "reason": "evidence.agreement_text: is required; "
                "evidence.ip_address: must be a valid IP address",
            },
        ],
    }
    assert await _total(client, tenant) == 1
    assert await _total(client, other_tenant) == 0


async def test_all_rejected_is_still_200(client, tenant):
    batch = records(tenant, 2)
    for record in batch:
        record["opted_in"] = "yes"
    r = await client.post("/v1/consent/bulk", json={"records": batch}, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["accepted"] == 0
    assert [x["reason"] for x in r.json()["rejected"]] == ["opted_in: must be true or false"] * 2


async def test_the_same_contact_twice_keeps_the_order(client, tenant):
    first = capture_body(tenant, captured_at="2026-04-26T12:00:00Z")
    second = capture_body(
        tenant, opted_in=False, captured_at="2026-04-26T13:00:00Z", consent_method="verbal"
    )
    r = await client.post(
        "/v1/consent/bulk", json={"records": [first, second]}, headers=tenant.headers
    )
    assert r.json() == {"accepted": 2, "rejected": []}
    listed = (await client.get("/v1/consent", headers=tenant.headers)).json()["data"]
    assert len(listed) == 1
    assert listed[0]["opted_in"] is False
    assert listed[0]["opted_out_at"] == "2026-04-26T13:00:00Z"
    assert listed[0]["consent_method"] == "verbal"
    history = await client.get(f"/v1/consent/{listed[0]['id']}/history", headers=tenant.headers)
    assert [(e["type"], e["evidence"]) for e in history.json()["data"]] == [
        ("opt_in", first["evidence"]),
        ("opt_out", second["evidence"]),
    ]


async def test_existing_records_are_updated_and_new_ones_created(client, tenant):
    single = await client.post(
        "/v1/consent", json=capture_body(tenant, "+15550000000"), headers=tenant.headers
    )
    batch = records(tenant, 3)
    for record in batch:
        record["opted_in"] = False
        record["evidence"]["captured_at"] = "2026-05-01T00:00:00Z"
    r = await client.post("/v1/consent/bulk", json={"records": batch}, headers=tenant.headers)
    assert r.json() == {"accepted": 3, "rejected": []}
    updated = await client.get(f"/v1/consent/{single.json()['id']}", headers=tenant.headers)
    assert updated.json()["opted_in"] is False
    assert updated.json()["opted_out_at"] == "2026-05-01T00:00:00Z"
    assert updated.json()["created_at"] == single.json()["created_at"]
    assert await _total(client, tenant) == 3


async def test_a_stale_opt_in_is_rejected_for_that_record_only(client, tenant):
    out = capture_body(tenant, "+15550000001", opted_in=False, captured_at="2026-05-01T00:00:00Z")
    await client.post("/v1/consent", json=out, headers=tenant.headers)
    stale = capture_body(tenant, "+15550000001", captured_at="2026-04-01T00:00:00Z")
    fine = capture_body(tenant, "+15550000002")
    r = await client.post(
        "/v1/consent/bulk", json={"records": [stale, fine]}, headers=tenant.headers
    )
    assert r.json()["accepted"] == 1
    assert r.json()["rejected"][0]["index"] == 0
    assert r.json()["rejected"][0]["reason"].startswith("evidence.captured_at: is before")


async def test_a_stale_opt_out_is_rejected_for_that_record_only(client, tenant):
    given = capture_body(tenant, "+15550000001", captured_at="2026-05-01T00:00:00Z")
    await client.post("/v1/consent", json=given, headers=tenant.headers)
    stale = capture_body(tenant, "+15550000001", opted_in=False, captured_at="2026-04-01T00:00:00Z")
    fine = capture_body(tenant, "+15550000002", opted_in=False)
    r = await client.post(
        "/v1/consent/bulk", json={"records": [stale, fine]}, headers=tenant.headers
    )
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 1,
        "rejected": [
            {
                "index": 0,
                "code": "VALIDATION_FAILED",
                "reason": "evidence.captured_at: is before the contact opted in at "
                "2026-05-01T00:00:00Z; an opt-out dated before that consent cannot end it",
            }
        ],
    }
    kept = await client.get(
        "/v1/consent", params={"contact_number": "+15550000001"}, headers=tenant.headers
    )
    assert kept.json()["data"][0]["opted_in"] is True


@pytest.mark.parametrize(("captured_at", "reason"), EDGE_TIMES)
async def test_a_time_out_of_range_rejects_its_record_only(client, tenant, captured_at, reason):
    batch = records(tenant, 5)
    batch[3]["evidence"]["captured_at"] = captured_at
    r = await client.post("/v1/consent/bulk", json={"records": batch}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 4,
        "rejected": [
            {
                "index": 3,
                "code": "VALIDATION_FAILED",
                "reason": f"evidence.captured_at: {reason}",
            }
        ],
    }
    assert await _total(client, tenant) == 4


@pytest.mark.parametrize("text", INVISIBLE_TEXTS)
async def test_an_invisible_agreement_text_rejects_its_record_only(client, tenant, text):
    batch = records(tenant, 3)
    batch[1]["evidence"]["agreement_text"] = text
    r = await client.post("/v1/consent/bulk", json={"records": batch}, headers=tenant.headers)
    assert r.json() == {
        "accepted": 2,
        "rejected": [
            {
                "index": 1,
                "code": "VALIDATION_FAILED",
                "reason": "evidence.agreement_text: must not be blank",
            }
        ],
    }


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"records": []}, {"records": "must have at least 1 item"}),
        ({}, {"records": "is required"}),
        ({"records": {"a": 1}}, {"records": "must be an array"}),
        ({"records": [], "extra": True}, None),
        ([], {"body": "must be an object"}),
    ],
)
async def test_malformed_requests_are_422(client, tenant, body, details):
    r = await client.post("/v1/consent/bulk", json=body, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    if details is not None:
        assert r.json()["error"]["details"] == details


async def test_more_than_a_thousand_records_is_422_and_writes_nothing(client, tenant):
    r = await client.post(
        "/v1/consent/bulk", json={"records": records(tenant, 1001)}, headers=tenant.headers
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {"records": "must have at most 1000 items"}
    assert await _total(client, tenant) == 0


async def test_not_json_is_400(client, tenant):
    r = await client.post(
        "/v1/consent/bulk",
        content=b"records=1",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400


async def test_bodies_up_to_8_mib_pass_and_larger_ones_are_413(client, tenant):
    # ~5 MiB: over the 1 MiB of other endpoints, within bulk's 8 MiB.
    big = records(tenant, 1000, agreement_text="x" * 3900, start=100)
    r = await client.post("/v1/consent/bulk", json={"records": big}, headers=tenant.headers)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["accepted"] == 1000
    huge = records(tenant, 1000, agreement_text="y" * 3999, user_agent="u" * 1024)
    for record in huge:
        record["evidence"]["form_url"] = "https://example.com/" + "p" * 4000
    r = await client.post("/v1/consent/bulk", json={"records": huge}, headers=tenant.headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await _total(client, tenant) == 1000


@pytest.mark.parametrize("plan", ["starter", "legacy_basic", "legacy_pro"])
async def test_plan_gate_blocks_opt_ins_but_never_opt_outs(client, session, plan):
    tenant = await make_tenant(session, plan=plan)
    mixed = records(tenant, 2)
    mixed[1]["opted_in"] = False
    r = await client.post("/v1/consent/bulk", json={"records": mixed}, headers=tenant.headers)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "PLAN_REQUIRED"
    assert r.json()["error"]["message"] == SEED_PLAN_MESSAGE
    assert await _total(client, tenant) == 0
    outs = copy.deepcopy(mixed)
    outs[0]["opted_in"] = False
    r = await client.post("/v1/consent/bulk", json={"records": outs}, headers=tenant.headers)
    assert r.json() == {"accepted": 2, "rejected": []}


async def test_a_retried_bulk_call_with_its_idempotency_key_writes_nothing_twice(client, tenant):
    headers = {**tenant.headers, "Idempotency-Key": "bulk-2026-04-26"}
    body = {"records": records(tenant, 3)}
    first = await client.post("/v1/consent/bulk", json=body, headers=headers)
    again = await client.post("/v1/consent/bulk", json=body, headers=headers)
    assert again.status_code == first.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    page = await client.get("/v1/consent", params={"limit": 1}, headers=tenant.headers)
    record_id = page.json()["data"][0]["id"]
    history = await client.get(f"/v1/consent/{record_id}/history", headers=tenant.headers)
    assert len(history.json()["data"]) == 1


async def test_a_bulk_call_costs_its_record_count(client, session):
    from sqlalchemy import update

    from agentmessage.db.models import Organization

    tenant = await make_tenant(session)
    await session.execute(
        update(Organization)
        .where(Organization.id == tenant.org_id)
        .values(rate_limit_per_minute=10)
    )
    await session.commit()
    r = await client.post(
        "/v1/consent/bulk", json={"records": records(tenant, 11)}, headers=tenant.headers
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"]["records"].startswith("at most 10 records per call")
    r = await client.post(
        "/v1/consent/bulk", json={"records": records(tenant, 7)}, headers=tenant.headers
    )
    assert r.status_code == 200
    assert r.headers["ratelimit-limit"] == "10"
    assert r.headers["ratelimit-remaining"] == "3"
    r = await client.post(
        "/v1/consent/bulk", json={"records": records(tenant, 4, start=50)}, headers=tenant.headers
    )
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "RATE_LIMITED"
    assert int(r.headers["retry-after"]) >= 1
    assert await _total(client, tenant) == 7
