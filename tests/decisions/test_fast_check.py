"""The fast check (decisions/fast.py): on PostgreSQL a check is served in two
statements beside the framework. It must answer exactly as the route does, and
leave every other case (errors, ``at``, a spent allowance) to the route.

Run on both databases: on SQLite the route serves every check, so the same
expectations hold there too.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from agentmessage.app import create_app
from agentmessage.auth.service import create_key, revoke_key
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import ConsentDecision, Organization, RateLimitWindow
from agentmessage.kit.clock import clock
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.decisions.test_check import capture, check, statements_sent
from tests.fixtures.builders import Tenant, make_key, make_tenant
from tests.fixtures.redis import RedisServer
from tests.messaging.helpers import start_challenge


@asynccontextmanager
async def app_client(
    engine: AsyncEngine, connection: AsyncConnection, tmp_path: Path, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789", **settings),
        TestDatabase(engine, connection),
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await app.state.rate_limiter.close()


async def decisions_stored(session: AsyncSession, tenant: Tenant) -> int:
    count = select(func.count()).where(ConsentDecision.org_id == tenant.org_id)
    return int(await session.scalar(count) or 0)


async def set_rate_limit(session: AsyncSession, tenant: Tenant, per_minute: int) -> None:
    org = await session.get(Organization, tenant.org_id)
    assert org is not None
    org.rate_limit_per_minute = per_minute
    await session.commit()


async def test_the_fast_check_and_the_route_answer_alike(
    client: httpx.AsyncClient,
    tenant: Tenant,
    engine: AsyncEngine,
    connection: AsyncConnection,
    tmp_path: Path,
) -> None:
    await capture(client, tenant, "+15554440001")
    opted_out = await capture(client, tenant, "+15554440002")
    await client.delete(f"/v1/consent/{opted_out}", headers=tenant.headers)
    await capture(client, tenant, "+15554440003")
    feed = {"deactivations": [{"number": "+15554440003", "deactivated_at": "2026-05-01"}]}
    assert (
        await client.post("/v1/deactivations", json=feed, headers=tenant.headers)
    ).status_code == 200
    assert (await start_challenge(client, tenant, "+15554440004")).status_code == 202
    contacts = ["+15554440004", "+15554440001", "555-0100", "+15554440003", "+15554440002",
                "+15554440005", "+15554440001"]  # fmt: skip

    # Once before counting: the first check on a connection has asyncpg look up
    # the row type it returns, and the minute's first spend clears old windows
    # (the clock is held so that no new minute starts in between).
    with clock.frozen(datetime.now(UTC)):
        await check(client, tenant, contacts)
        async with statements_sent(connection) as fast_statements:
            fast = await check(client, tenant, contacts)
    async with (
        app_client(engine, connection, tmp_path, fast_check=False) as route_client,
        statements_sent(connection) as route_statements,
    ):
        routed = await check(route_client, tenant, contacts)

    assert fast["results"] == routed["results"]
    assert [r["reason"] for r in fast["results"]] == [
        "pending_confirmation", "opted_in", "invalid_number", "number_deactivated",
        "opted_out", "no_consent", "opted_in",
    ]  # fmt: skip
    for decision in (fast, routed):
        stored = await client.get(
            f"/v1/consent/decisions/{decision['decision_id']}", headers=tenant.headers
        )
        assert stored.json() == decision
    if connection.dialect.name == "postgresql":
        # The fast check's two statements (plus the savepoints the test's
        # transaction wraps them in) against the route's five and more.
        def work(statements: list[str]) -> list[str]:
            return [s for s in statements if "SAVEPOINT" not in s.upper()]

        assert len(work(fast_statements)) == 2, fast_statements
        assert len(work(route_statements)) >= 5, route_statements


async def test_what_the_fast_check_leaves_to_the_route(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    session: AsyncSession,
) -> None:
    await capture(client, tenant, "+15554440001")
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    write_only = await make_key(session, tenant, ("consent:write",))
    revoked = await create_key(session, org_id=tenant.org_id, scopes=["consent:read"])
    await revoke_key(session, org_id=tenant.org_id, key_id=revoked.key.id)
    await session.commit()
    cases = [
        ({"Authorization": f"Bearer {revoked.plain}"}, body, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer am_live_" + "x" * 43}, body, 401, "UNAUTHORIZED"),
        ({"Authorization": "Basic " + tenant.key}, body, 401, "UNAUTHORIZED"),
        ({"Authorization": f"Bearer {write_only}"}, body, 403, "FORBIDDEN"),
        (
            tenant.headers,
            {**body, "phone_number_id": other_tenant.phone_number_id},
            404,
            "NOT_FOUND",
        ),
        (tenant.headers, {**body, "extra": 1}, 422, "VALIDATION_FAILED"),
        (tenant.headers, {**body, "contact_numbers": []}, 422, "VALIDATION_FAILED"),
    ]
    for headers, request_body, status, code in cases:
        response = await client.post("/v1/consent/check", json=request_body, headers=headers)
        assert response.status_code == status, (request_body, response.text)
        error = response.json()["error"]
        assert error["code"] == code
        assert error["request_id"] == response.headers["X-Request-Id"]
    # A JSON body sent as another content type, or as none, is not read as JSON.
    for content_type in ("text/plain", None):
        response = await client.post(
            "/v1/consent/check",
            content=json.dumps(body),
            headers={**tenant.headers, **({"Content-Type": content_type} if content_type else {})},
        )
        assert response.status_code == 422, (content_type, response.text)
        assert "Content-Type: application/json" in response.json()["error"]["details"]["body"]
    assert await decisions_stored(session, tenant) == 0
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = await client.post(
            "/v1/consent/check",
            content=json.dumps(body),
            headers={**tenant.headers, "Content-Type": content_type},
        )
        assert response.status_code == 200, (content_type, response.text)

    # `at` is answered from history, by the route.
    past = await check(client, tenant, ["+15554440001"], at="2026-01-01T00:00:00Z")
    assert past["results"][0]["reason"] == "no_consent"
    assert await decisions_stored(session, tenant) == 3


async def test_a_spent_allowance_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession
) -> None:
    await set_rate_limit(session, tenant, 2)
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    answers = [
        await client.post("/v1/consent/check", json=body, headers=tenant.headers) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert all(a.headers["RateLimit-Limit"] == "2" for a in answers)
    assert answers[2].json()["error"]["code"] == "RATE_LIMITED"
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert await decisions_stored(session, tenant) == 2


async def test_with_redis_the_allowance_is_spent_there(
    engine: AsyncEngine,
    connection: AsyncConnection,
    tmp_path: Path,
    tenant: Tenant,
    session: AsyncSession,
    redis_server: RedisServer,
) -> None:
    await set_rate_limit(session, tenant, 2)
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    async with app_client(engine, connection, tmp_path, redis_url=redis_server.url) as client:
        # Another test's organization never shares this one's window: the keys
        # are per organization, so a fresh tenant starts at its full allowance.
        answers = [
            await client.post("/v1/consent/check", json=body, headers=tenant.headers)
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert await decisions_stored(session, tenant) == 2


@pytest.mark.parametrize("header", ["authorization", "AUTHORIZATION"])
async def test_the_bearer_scheme_and_header_name_are_case_insensitive(
    client: httpx.AsyncClient, tenant: Tenant, header: str
) -> None:
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    response = await client.post(
        "/v1/consent/check", json=body, headers={header: f"bearer {tenant.key}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["reason"] == "no_consent"


async def test_on_a_real_database_with_its_own_pool(
    backend: str, database_url_factory: Any, tmp_path: Path
) -> None:
    """Outside the suite's rolled-back transaction: the app's own engine and, on
    PostgreSQL, the fast check's own connection pool, many checks at once."""
    engine = create_engine(database_url_factory(backend))
    await upgrade_to_head(engine)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        tenant = await make_tenant(session)
    database = Database(create_engine(engine.url.render_as_string(hide_password=False)))
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")  # type: ignore[arg-type]
    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await capture(client, tenant, "+15554440001")
            decisions = await asyncio.gather(
                *(check(client, tenant, ["+15554440001", f"+1555444{n:04d}"]) for n in range(40))
            )
            for decision in decisions[:3]:
                stored = await client.get(
                    f"/v1/consent/decisions/{decision['decision_id']}", headers=tenant.headers
                )
                assert stored.json() == decision
    finally:
        await app.state.rate_limiter.close()
        await database.dispose()
    assert {d["results"][0]["reason"] for d in decisions} == {"opted_in"}
    assert len({d["decision_id"] for d in decisions}) == 40
    async with AsyncSession(engine) as session:
        assert await decisions_stored(session, tenant) == 40
    await engine.dispose()


def _bodies(rng: random.Random, own: str, other: str, known: list[str]) -> list[Any]:
    """Check bodies: half of them good, the others with one thing wrong, in the
    ways clients get it wrong."""
    strings = [*known, "+15554449999", "555-0100", "+1", "", " +15554440001", "+15554440001 "]
    defects: list[tuple[str, Any]] = [
        ("phone_number_id", other),
        ("phone_number_id", str(uuid.uuid4())),
        ("phone_number_id", "not-a-uuid"),
        ("phone_number_id", 7),
        ("contact_numbers", []),
        ("contact_numbers", ["+15554440001"] * 1001),
        ("contact_numbers", ["x" * 65]),
        ("contact_numbers", [5]),
        ("contact_numbers", [None]),
        ("contact_numbers", "+15554440001"),
        ("at", "2026-01-01T00:00:00Z"),
        ("at", "2026-13-01T00:00:00Z"),
        ("at", "yesterday"),
        ("at", None),
        ("extra", True),
    ]
    bodies: list[Any] = [[], "text", None, {}, {"phone_number_id": own}]
    for n in range(80):
        size = rng.choice([1, 1, 1, 2, 3, 10, 1000])
        body: dict[str, Any] = {
            "phone_number_id": own,
            "contact_numbers": [rng.choice(strings) for _ in range(size)],
        }
        if n % 2:
            name, value = rng.choice(defects)
            body[name] = value
        bodies.append(body)
    return bodies


async def test_the_fast_check_and_the_route_answer_every_body_alike(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    engine: AsyncEngine,
    connection: AsyncConnection,
    tmp_path: Path,
) -> None:
    """Differential: the same bodies to a server with the fast check and to one
    without; the same status, error and answers (ids and times aside)."""
    known = ["+15554440001", "+15554440002"]
    await capture(client, tenant, known[0])
    second = await capture(client, tenant, known[1])
    await client.delete(f"/v1/consent/{second}", headers=tenant.headers)
    rng = random.Random(20261123)
    bodies = _bodies(rng, tenant.phone_number_id, other_tenant.phone_number_id, known)
    good = {"phone_number_id": tenant.phone_number_id, "contact_numbers": known}
    raw = [b"{", b'{"phone_number_id": "' + tenant.phone_number_id.encode() + b'", ]', b"\xff"]
    raw.append(json.dumps(good).encode())  # a good body with no Content-Type

    def seen(response: httpx.Response) -> Any:
        answer = response.json()
        if response.status_code != 200:
            answer["error"].pop("request_id")
            return response.status_code, answer
        return 200, answer["phone_number_id"], answer["at"], answer["results"]

    async with app_client(engine, connection, tmp_path, fast_check=False) as route_client:
        for body in [*bodies, *raw]:
            sent = {"content": body} if isinstance(body, bytes) else {"json": body}
            fast = await client.post("/v1/consent/check", headers=tenant.headers, **sent)
            routed = await route_client.post("/v1/consent/check", headers=tenant.headers, **sent)
            assert seen(fast) == seen(routed), body


async def test_the_first_check_of_a_minute_clears_the_old_windows(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, session: AsyncSession
) -> None:
    """As every spend of the database's rate limiter does: windows older than an
    hour go when an organization opens a new one, and only that organization's."""
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    old, recent = now - timedelta(hours=2), now - timedelta(minutes=10)
    for org in (tenant.org_id, other_tenant.org_id):
        for start in (old, recent):
            session.add(RateLimitWindow(org_id=org, window_start=start, spent=5))
    await session.commit()
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": ["+15554440001"]}
    with clock.frozen(now):
        for _ in range(2):
            response = await client.post("/v1/consent/check", json=body, headers=tenant.headers)
            assert response.status_code == 200, response.text
    windows = select(RateLimitWindow.org_id, RateLimitWindow.window_start, RateLimitWindow.spent)
    left = {(row.org_id, row.window_start): row.spent for row in await session.execute(windows)}
    assert {start for org, start in left if org == tenant.org_id} == {recent, now.replace(second=0)}
    assert left[(tenant.org_id, now.replace(second=0))] == 2
    assert {start for org, start in left if org == other_tenant.org_id} == {old, recent}
