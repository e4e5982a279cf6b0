"""GET /v1/consent/{id}, GET /v1/consent/{id}/history, DELETE /v1/consent/{id} (seed 000)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmessage.kit.clock import clock
from tests.fixtures.builders import capture_body, make_key

UNKNOWN = "497f6eca-6276-4993-bfeb-53cbbbba6f08"  # the seed's example id


@pytest.fixture
async def record(client, tenant):
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    assert r.status_code == 201
    return r.json()


ENDPOINTS = [
    ("GET", "/v1/consent/{id}", "consent:write"),
    ("GET", "/v1/consent/{id}/history", "consent:write"),
    ("DELETE", "/v1/consent/{id}", "consent:read"),
]


@pytest.mark.parametrize(("method", "path", "wrong_scope"), ENDPOINTS)
async def test_anonymous_is_401(client, record, method, path, wrong_scope):
    r = await client.request(method, path.format(id=record["id"]))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(("method", "path", "wrong_scope"), ENDPOINTS)
async def test_missing_scope_is_403(client, session, tenant, record, method, path, wrong_scope):
    key = await make_key(session, tenant, (wrong_scope,))
    r = await client.request(
        method, path.format(id=record["id"]), headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(("method", "path", "wrong_scope"), ENDPOINTS)
async def test_malformed_id_is_400(client, tenant, method, path, wrong_scope):
    r = await client.request(method, path.format(id="not-a-uuid"), headers=tenant.headers)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert r.json()["error"]["details"] == {"id": "must be a UUID"}


@pytest.mark.parametrize(("method", "path", "wrong_scope"), ENDPOINTS)
async def test_unknown_id_is_404(client, tenant, method, path, wrong_scope):
    r = await client.request(method, path.format(id=UNKNOWN), headers=tenant.headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
    assert r.json()["error"]["message"] == "not found"


@pytest.mark.parametrize(("method", "path", "wrong_scope"), ENDPOINTS)
async def test_another_organizations_id_is_404_like_an_unknown_one(
    client, other_tenant, record, method, path, wrong_scope
):
    theirs = await client.request(
        method, path.format(id=record["id"]), headers=other_tenant.headers
    )
    unknown = await client.request(method, path.format(id=UNKNOWN), headers=other_tenant.headers)
    assert theirs.status_code == 404
    strip = lambda body: {**body["error"], "request_id": None}  # noqa: E731
    assert strip(theirs.json()) == strip(unknown.json())
    assert record["contact_number"] not in theirs.text


async def test_get_returns_the_record(client, tenant, record):
    r = await client.get(f"/v1/consent/{record['id']}", headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == record


async def test_delete_opts_out_as_in_seed_000(client, tenant, record):
    # Time moves forward from the capture (recorded now) to the revocation.
    at = datetime(2027, 4, 26, 13, 0, tzinfo=UTC)
    with clock.frozen(at):
        r = await client.delete(f"/v1/consent/{record['id']}", headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == {
        **record,
        "opted_in": False,
        "opted_in_at": "2026-04-26T12:00:00Z",
        "opted_out_at": "2027-04-26T13:00:00Z",
        "source": "api",
        "updated_at": "2027-04-26T13:00:00Z",
    }
    history = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    opt_out = history.json()["data"][-1]
    assert opt_out["type"] == "opt_out"
    assert opt_out["reason"] == "api:delete"
    assert opt_out["source"] == "api"
    assert opt_out["occurred_at"] == "2027-04-26T13:00:00Z"
    assert opt_out["actor"] == {"type": "api_key", "id": str(tenant.key_id)}


async def test_delete_is_idempotent_and_writes_one_event(client, tenant, record):
    first = await client.delete(f"/v1/consent/{record['id']}", headers=tenant.headers)
    with clock.frozen(datetime.now(UTC) + timedelta(hours=1)):
        second = await client.delete(f"/v1/consent/{record['id']}", headers=tenant.headers)
    assert second.status_code == 200
    assert second.json() == first.json()
    history = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    assert [e["type"] for e in history.json()["data"]] == ["opt_in", "opt_out"]


async def test_delete_is_never_refused_after_consent_dated_a_little_ahead(client, tenant):
    # captured_at may run up to 5 minutes ahead of our clock; DELETE happens now.
    with clock.frozen(datetime(2026, 6, 1, 12, 0, tzinfo=UTC)):
        body = capture_body(tenant, captured_at="2026-06-01T12:04:00Z")
        created = await client.post("/v1/consent", json=body, headers=tenant.headers)
        r = await client.delete(f"/v1/consent/{created.json()['id']}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["opted_in"], r.json()["opted_out_at"]) == (False, "2026-06-01T12:00:00Z")


async def test_history_follows_commit_order_when_the_clock_steps_back(client, tenant):
    # Two servers whose clocks disagree, or one stepped back by NTP: the opt-out
    # is written "earlier" than the opt-in it follows, and still comes after it.
    with clock.frozen(datetime(2030, 1, 1, 12, 0, tzinfo=UTC)):
        captured = await client.post(
            "/v1/consent",
            json=capture_body(tenant, captured_at="2030-01-01T11:00:00Z"),
            headers=tenant.headers,
        )
    consent_id = captured.json()["id"]
    with clock.frozen(datetime(2030, 1, 1, 11, 30, tzinfo=UTC)):
        await client.delete(f"/v1/consent/{consent_id}", headers=tenant.headers)
    r = await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)
    assert [(e["type"], e["created_at"]) for e in r.json()["data"]] == [
        ("opt_in", "2030-01-01T12:00:00Z"),
        ("opt_out", "2030-01-01T11:30:00Z"),
    ]


async def test_history_is_oldest_first_in_the_list_envelope(client, tenant):
    # Captured under the same frozen clock as the rest: captured with the real one,
    # the record's first event sorted after 2027-05-01 once that date had passed.
    start = datetime(2027, 5, 1, tzinfo=UTC)
    with clock.frozen(start - timedelta(days=1)):
        r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
        record = r.json()
    with clock.frozen(start):
        await client.delete(f"/v1/consent/{record['id']}", headers=tenant.headers)
        clock.advance(timedelta(minutes=1))
        again = capture_body(tenant, captured_at="2027-05-01T00:01:00Z", consent_method="verbal")
        await client.post("/v1/consent", json=again, headers=tenant.headers)
    r = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    body = r.json()
    assert body["success"] is True
    assert body["meta"] == {"total": 3}
    assert [(e["type"], e["reason"], e["consent_method"]) for e in body["data"]] == [
        ("opt_in", "api:capture", "checkbox"),
        ("opt_out", "api:delete", None),
        ("opt_in", "api:capture", "verbal"),
    ]
    assert all(e["consent_id"] == record["id"] for e in body["data"])
    created = [e["created_at"] for e in body["data"]]
    assert created == sorted(created)
