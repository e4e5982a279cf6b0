"""Idempotency-Key on POST endpoints (SPEC.md "Idempotency-Key"), through POST /v1/consent
and test-only routes that count their runs or fail on purpose."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.app import create_app
from agentmessage.auth.dependencies import ConsentWrite
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import IdempotencyKey, PhoneNumber
from agentmessage.kit.clock import clock, utcnow
from agentmessage.kit.idempotency import (
    LEASE,
    RETENTION,
    Idempotent,
    claim_key,
    key_digest,
    request_fingerprint,
)
from agentmessage.kit.routing import TransactionalRoute, get_session
from agentmessage.orgs.service import create_phone_number
from tests.conftest import TestDatabase
from tests.fixtures.builders import Tenant, capture_body, make_tenant

Session = Annotated[AsyncSession, Depends(get_session)]


def keyed(tenant: Tenant, key: str) -> dict[str, str]:
    return {**tenant.headers, "Idempotency-Key": key}


async def history(client: httpx.AsyncClient, tenant: Tenant, record_id: str) -> list[Any]:
    r = await client.get(f"/v1/consent/{record_id}/history", headers=tenant.headers)
    assert r.status_code == 200
    return list(r.json()["data"])


class Calls:
    """Test-only POST routes that opt into Idempotency-Key and count their runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail_first = False

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/v1/test", route_class=TransactionalRoute)

        @router.post("/calls", status_code=201)
        async def count_call(
            caller: ConsentWrite, _idempotency: Idempotent, body: dict[str, Any] = Body()
        ) -> dict[str, Any]:
            self.runs += 1
            if self.fail_first and self.runs == 1:
                raise RuntimeError("the first run fails")
            return {"run": self.runs, "echo": body}

        return router


def app_with_test_routes(settings: Any, database: Database, calls: Calls) -> FastAPI:
    app = create_app(settings, database)
    app.include_router(calls.router())
    return app


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def test_client(engine, connection, settings, calls) -> AsyncIterator[httpx.AsyncClient]:
    app = app_with_test_routes(settings, TestDatabase(engine, connection), calls)
    async with client_for(app) as client:
        yield client


# -- Who may claim a key -------------------------------------------------------------------


async def test_anonymous_request_with_a_key_is_401_and_claims_nothing(client, tenant):
    body = capture_body(tenant)
    r = await client.post("/v1/consent", json=body, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 401
    r = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers


# -- Replay ----------------------------------------------------------------------------------


async def test_retry_replays_the_201_and_its_body_without_a_second_history_event(client, tenant):
    body = capture_body(tenant)
    first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers

    retry = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["content-type"] == "application/json"
    assert retry.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(await history(client, tenant, first.json()["id"])) == 1


async def test_retry_of_an_update_replays_its_200(client, tenant):
    await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    update = capture_body(tenant, opted_in=False, captured_at="2026-04-27T09:30:00Z")
    first = await client.post("/v1/consent", json=update, headers=keyed(tenant, "k-2"))
    retry = await client.post("/v1/consent", json=update, headers=keyed(tenant, "k-2"))
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.content == first.content
    assert [e["type"] for e in await history(client, tenant, first.json()["id"])] == [
        "opt_in",
        "opt_out",
    ]


async def test_the_same_json_with_other_key_order_and_spacing_is_the_same_request(client, tenant):
    body = capture_body(tenant)
    first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    reordered = dict(reversed(list(body.items())))
    retry = await client.post(
        "/v1/consent",
        content=orjson.dumps(reordered, option=orjson.OPT_INDENT_2),
        headers={**keyed(tenant, "k-1"), "Content-Type": "application/json"},
    )
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content


async def test_same_key_with_a_different_body_is_422_and_changes_nothing(client, tenant):
    body = capture_body(tenant)
    first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    other = capture_body(tenant, opted_in=False, captured_at="2026-04-27T09:30:00Z")
    r = await client.post("/v1/consent", json=other, headers=keyed(tenant, "k-1"))
    assert r.status_code == 422
    assert r.json() == {
        "success": False,
        "error": {
            "code": "IDEMPOTENCY_KEY_REUSED",
            "message": "this Idempotency-Key was already used with a different request body",
            "request_id": r.headers["x-request-id"],
            "details": {"Idempotency-Key": "was already used with a different request body"},
        },
    }
    record = await client.get(f"/v1/consent/{first.json()['id']}", headers=tenant.headers)
    assert record.json()["opted_in"] is True
    assert len(await history(client, tenant, first.json()["id"])) == 1
    # The first request's answer is still the one replayed.
    again = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert again.content == first.content


async def test_same_key_on_another_endpoint_is_independent(test_client, calls, tenant):
    body = capture_body(tenant)
    consent = await test_client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    other = await test_client.post("/v1/test/calls", json=body, headers=keyed(tenant, "k-1"))
    assert (consent.status_code, other.status_code) == (201, 201)
    assert other.json() == {"run": 1, "echo": body}
    assert calls.runs == 1


async def test_same_key_in_another_organization_is_independent(client, tenant, other_tenant):
    mine = await client.post("/v1/consent", json=capture_body(tenant), headers=keyed(tenant, "k-1"))
    theirs = await client.post(
        "/v1/consent", json=capture_body(other_tenant), headers=keyed(other_tenant, "k-1")
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["org_id"] == str(other_tenant.org_id)
    assert theirs.json()["id"] != mine.json()["id"]


async def test_requests_without_a_key_are_never_replayed(client, tenant):
    body = capture_body(tenant)
    first = await client.post("/v1/consent", json=body, headers=tenant.headers)
    second = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert len(await history(client, tenant, first.json()["id"])) == 2


# -- What is stored --------------------------------------------------------------------------


async def test_a_client_error_is_stored_and_replayed(client, session, tenant):
    unknown = uuid.uuid4()
    body = {**capture_body(tenant), "phone_number_id": str(unknown)}
    first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert first.status_code == 404
    assert first.json()["error"]["code"] == "NOT_FOUND"

    # The number exists now, yet the retry answers what the first request got.
    session.add(
        PhoneNumber(org_id=tenant.org_id, id=unknown, number="+15550009999", created_at=utcnow())
    )
    await session.commit()
    retry = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert retry.status_code == 404
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content  # its request_id is the first request's
    assert retry.json()["error"]["request_id"] == first.headers["x-request-id"]


async def test_a_body_that_fails_validation_is_not_stored(client, tenant):
    """Nothing ran, so the key stays free: fix the body and retry with the same key."""
    broken = capture_body(tenant, ip_address="")
    r = await client.post("/v1/consent", json=broken, headers=keyed(tenant, "k-1"))
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {"evidence.ip_address": "must be a valid IP address"}
    body = capture_body(tenant)
    fixed = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers


async def test_a_server_error_is_not_stored_and_the_retry_runs_again(test_client, calls, tenant):
    calls.fail_first = True
    body = {"amount": 1}
    failed = await test_client.post("/v1/test/calls", json=body, headers=keyed(tenant, "k-1"))
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "INTERNAL"

    retry = await test_client.post("/v1/test/calls", json=body, headers=keyed(tenant, "k-1"))
    assert retry.status_code == 201
    assert "idempotent-replayed" not in retry.headers
    assert retry.json() == {"run": 2, "echo": body}
    replay = await test_client.post("/v1/test/calls", json=body, headers=keyed(tenant, "k-1"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == retry.content
    assert calls.runs == 2


# -- The key itself --------------------------------------------------------------------------


async def test_a_key_of_255_bytes_is_accepted(client, tenant):
    key = "k" * 255
    first = await client.post("/v1/consent", json=capture_body(tenant), headers=keyed(tenant, key))
    retry = await client.post("/v1/consent", json=capture_body(tenant), headers=keyed(tenant, key))
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    ("key", "reason"),
    [("k" * 256, "must be at most 255 characters"), ("", "must be at least 1 character")],
    ids=["256-bytes", "empty"],
)
async def test_a_key_too_long_or_empty_is_422(client, tenant, key, reason):
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=keyed(tenant, key))
    assert r.status_code == 422
    assert r.json() == {
        "success": False,
        "error": {
            "code": "VALIDATION_FAILED",
            "message": "validation failed",
            "request_id": r.headers["x-request-id"],
            "details": {"Idempotency-Key": reason},
        },
    }
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_keys_are_compared_by_their_bytes(client, tenant):
    body = capture_body(tenant)
    first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "Key-1"))
    other = await client.post("/v1/consent", json=body, headers=keyed(tenant, "key-1"))
    assert "idempotent-replayed" not in other.headers
    assert (first.status_code, other.status_code) == (201, 200)


# -- Claims in progress, abandoned and expired -----------------------------------------------


async def claim_in_progress(session, tenant: Tenant, key: str, body: dict[str, Any]) -> None:
    """The row a request writes when it claims ``key`` and is still running."""
    now = utcnow()
    session.add(
        IdempotencyKey(
            org_id=tenant.org_id,
            endpoint="POST /v1/consent",
            key_hash=key_digest(key),
            request_hash=request_fingerprint("POST", "/v1/consent", orjson.dumps(body)),
            state="in_progress",
            created_at=now,
            locked_until=now + LEASE,
            expires_at=now + RETENTION,
        )
    )
    await session.commit()


async def test_a_key_still_in_progress_is_409(client, session, tenant):
    body = capture_body(tenant)
    with clock.frozen(utcnow()):
        await claim_in_progress(session, tenant, "k-1", body)
        r = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert r.status_code == 409
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_a_key_in_progress_with_a_different_body_is_422(client, session, tenant):
    await claim_in_progress(session, tenant, "k-1", capture_body(tenant))
    other = capture_body(tenant, opted_in=False)
    r = await client.post("/v1/consent", json=other, headers=keyed(tenant, "k-1"))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_an_abandoned_claim_is_taken_over_once_its_lease_ran_out(client, session, tenant):
    body = capture_body(tenant)
    with clock.frozen(utcnow()):
        await claim_in_progress(session, tenant, "k-1", body)  # its process died
        clock.advance(LEASE - timedelta(seconds=1))
        waiting = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
        clock.advance(timedelta(seconds=1))
        taken = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
        retry = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert waiting.status_code == 409
    assert taken.status_code == 201
    assert "idempotent-replayed" not in taken.headers
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == taken.content
    assert len(await history(client, tenant, taken.json()["id"])) == 1


async def test_a_request_that_outlived_its_lease_rolls_back_instead_of_running_twice(
    engine, connection, settings, session, tenant
):
    """A retry took its claim over and was served: its own work must not commit too."""
    app = create_app(settings, TestDatabase(engine, connection))
    router = APIRouter(prefix="/v1/test", route_class=TransactionalRoute)
    runs = 0
    retries: list[httpx.Response] = []

    @router.post("/numbers", status_code=201)
    async def add_number(
        caller: ConsentWrite, _idempotency: Idempotent, session: Session
    ) -> dict[str, str]:
        nonlocal runs
        runs += 1
        number = f"+155502000{runs:02d}"
        if runs == 1:  # stalls past its lease while the client retries
            clock.advance(LEASE)
            retries.append(await client.post("/v1/test/numbers", headers=keyed(tenant, "k-1")))
        await create_phone_number(session, org_id=caller.org_id, number=number)
        return {"number": number}

    app.include_router(router)
    with clock.frozen(utcnow()):
        async with client_for(app) as client:
            stalled = await client.post("/v1/test/numbers", headers=keyed(tenant, "k-1"))
            replay = await client.post("/v1/test/numbers", headers=keyed(tenant, "k-1"))
    (retry,) = retries
    assert retry.status_code == 201
    assert retry.json() == {"number": "+15550200002"}
    assert stalled.status_code == 409
    assert stalled.json()["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == retry.content
    numbers = await session.scalars(
        select(PhoneNumber.number).where(PhoneNumber.org_id == tenant.org_id)
    )
    assert sorted(numbers) == sorted([tenant.number.number, "+15550200002"])


async def test_a_request_that_outlived_its_lease_cannot_free_its_successors_key(
    engine, connection, settings, tenant
):
    app = create_app(settings, TestDatabase(engine, connection))
    router = APIRouter(prefix="/v1/test", route_class=TransactionalRoute)

    @router.post("/stalls", status_code=201)
    async def stall(
        caller: ConsentWrite, _idempotency: Idempotent, body: dict[str, Any] = Body()
    ) -> None:
        clock.advance(LEASE)
        # Meanwhile a retry (in another process) took the key over and still runs.
        await claim_key(
            app.state.database,
            org_id=caller.org_id,
            endpoint="POST /v1/test/stalls",
            key="k-1",
            fingerprint=request_fingerprint("POST", "/v1/test/stalls", orjson.dumps(body)),
        )
        raise RuntimeError("the stalled request fails at last")

    app.include_router(router)
    with clock.frozen(utcnow()):
        async with client_for(app) as client:
            stalled = await client.post("/v1/test/stalls", json={}, headers=keyed(tenant, "k-1"))
            retry = await client.post("/v1/test/stalls", json={}, headers=keyed(tenant, "k-1"))
    assert stalled.status_code == 500
    assert retry.status_code == 409  # the successor's claim was left alone


async def test_a_key_expires_after_24_hours_and_then_runs_again(client, session, tenant):
    body = capture_body(tenant)
    with clock.frozen(utcnow()):
        first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
        clock.advance(RETENTION - timedelta(seconds=1))
        replay = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
        clock.advance(timedelta(seconds=1))
        again = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert (first.status_code, again.status_code) == (201, 200)
    assert "idempotent-replayed" not in again.headers
    assert len(await history(client, tenant, first.json()["id"])) == 2


async def test_expired_keys_are_deleted_when_the_organization_claims_another(
    client, session, tenant
):
    async def keys_held() -> int:
        count = select(func.count()).where(IdempotencyKey.org_id == tenant.org_id)
        return int(await session.scalar(count) or 0)

    with clock.frozen(utcnow()):
        for n in range(3):
            body = capture_body(tenant, f"+1555444000{n}")
            await client.post("/v1/consent", json=body, headers=keyed(tenant, f"k-{n}"))
        assert await keys_held() == 3
        clock.advance(RETENTION)
        body = capture_body(tenant, "+15554449999")
        await client.post("/v1/consent", json=body, headers=keyed(tenant, "fresh"))
        assert await keys_held() == 1


# -- Durable and concurrent (real commits, a database of their own) --------------------------


@asynccontextmanager
async def own_database(url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(url))
    try:
        yield database
    finally:
        await database.dispose()


async def test_replay_survives_a_restart(backend, database_url_factory, settings):
    url = database_url_factory(backend)
    async with own_database(url) as database:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
        body = capture_body(tenant)
        async with client_for(create_app(settings, database)) as client:
            first = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
    assert first.status_code == 201

    # A new process on the same database.
    async with own_database(url) as database, client_for(create_app(settings, database)) as client:
        retry = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
        events = await history(client, tenant, first.json()["id"])
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    assert len(events) == 1


async def test_concurrent_requests_with_one_key_have_one_effect(
    backend, database_url_factory, settings
):
    """20 at once (a real race on PostgreSQL; SQLite serialises the writers)."""
    async with own_database(database_url_factory(backend)) as database:
        await upgrade_to_head(database.engine)
        async with database.session(writes=True) as session:
            tenant = await make_tenant(session)
        body = capture_body(tenant)
        async with client_for(create_app(settings, database)) as client:

            async def until_final() -> httpx.Response:
                """Retries a 409 as a client should, until the answer is final."""
                for _ in range(1000):
                    r = await client.post("/v1/consent", json=body, headers=keyed(tenant, "k-1"))
                    if r.status_code != 409:
                        return r
                    await asyncio.sleep(0.005)
                raise AssertionError("never got a final answer")

            responses = await asyncio.gather(*(until_final() for _ in range(20)))
            assert {r.status_code for r in responses} == {201}
            assert len({r.content for r in responses}) == 1
            assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
            events = await history(client, tenant, responses[0].json()["id"])
    assert len(events) == 1


# -- Documentation ---------------------------------------------------------------------------


async def test_openapi_documents_the_header_and_the_409(client):
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/consent"]["post"]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header"
    assert header["required"] is False
    assert "IDEMPOTENCY_KEY_REUSED" in header["description"]
    schema = header["schema"]["anyOf"][0]
    assert (schema["minLength"], schema["maxLength"]) == (1, 255)
    conflict = operation["responses"]["409"]["content"]["application/json"]["example"]
    assert conflict["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
