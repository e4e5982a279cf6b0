"""Per-organization rate limits (SPEC.md "Auth, scopes, plans, limits").

Through real endpoints for the cost of 1, and a test-only batch route for a cost
of N (the charge bulk capture makes). Windows are clock minutes: the clock is
frozen and advanced, never slept on.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from agentmessage.app import create_app
from agentmessage.auth.dependencies import require
from agentmessage.auth.ratelimit import charge
from agentmessage.auth.service import Caller
from agentmessage.db.models import Organization, RateLimitWindow
from agentmessage.kit.clock import clock
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.fixtures.builders import Tenant, make_key, make_tenant
from tests.fixtures.postgres import PostgresCluster
from tests.fixtures.redis import RedisServer

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
# 15 seconds into a minute: RateLimit-Reset and Retry-After say 45.
T0 = datetime(2026, 5, 1, 12, 0, 15, tzinfo=UTC)


class Batch(BaseModel):
    items: list[int]


async def batch(
    request: Request,
    caller: Annotated[Caller, Depends(require("consent:write", charge=False))],
    body: Batch,
) -> dict[str, int]:
    """Test-only: costs one unit per item, as bulk capture does per record."""
    await charge(request, caller, cost=len(body.items), field="items")
    return {"accepted": len(body.items)}


def _app(settings: Settings, engine: AsyncEngine, connection: AsyncConnection) -> FastAPI:
    app = create_app(settings, TestDatabase(engine, connection))
    app.add_api_route("/v1/test/batch", batch, methods=["POST"])
    return app


@pytest.fixture
async def client(
    engine: AsyncEngine, connection: AsyncConnection, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The suite's client, with the test-only batch route."""
    transport = httpx.ASGITransport(app=_app(settings, engine, connection))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def frozen() -> Iterator[None]:
    with clock.frozen(T0):
        yield


async def set_rate_limit(session: AsyncSession, tenant: Tenant, per_minute: int | None) -> None:
    org = await session.get(Organization, tenant.org_id)
    assert org is not None
    org.rate_limit_per_minute = per_minute
    await session.commit()


async def limited_tenant(session: AsyncSession, per_minute: int) -> Tenant:
    tenant = await make_tenant(session, plan="growth")
    await set_rate_limit(session, tenant, per_minute)
    return tenant


def rate_limit(response: httpx.Response) -> tuple[int, int, int]:
    """(limit, remaining, reset) as the response's headers say."""
    return (
        int(response.headers["RateLimit-Limit"]),
        int(response.headers["RateLimit-Remaining"]),
        int(response.headers["RateLimit-Reset"]),
    )


async def post_batch(client: httpx.AsyncClient, tenant: Tenant, size: int) -> httpx.Response:
    return await client.post(
        "/v1/test/batch", json={"items": list(range(size))}, headers=tenant.headers
    )


def rate_limited_body(response: httpx.Response) -> dict[str, Any]:
    return {
        "success": False,
        "error": {
            "code": "RATE_LIMITED",
            "message": "rate limited",
            "request_id": response.headers["X-Request-Id"],
        },
    }


# --- who pays, and what every response shows -----------------------------------


async def test_anonymous_requests_cost_nothing_and_carry_no_rate_limit_headers(client):
    missing = await client.get("/v1/consent")
    unknown = await client.get(
        "/v1/consent", headers={"Authorization": "Bearer am_live_" + "x" * 40}
    )

    for response in (missing, unknown):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert not set(RATE_LIMIT_HEADERS) & set(response.headers)


async def test_success_carries_the_limit_what_is_left_and_seconds_to_reset(client, tenant, frozen):
    response = await client.get("/v1/consent", headers=tenant.headers)

    assert response.status_code == 200
    assert rate_limit(response) == (3000, 2999, 45)  # growth's default, 1 spent


async def test_errors_after_authentication_cost_one_and_carry_the_headers(
    client, session, tenant, frozen
):
    not_found = await client.get(f"/v1/consent/{uuid.uuid4()}", headers=tenant.headers)
    invalid = await client.get("/v1/consent?limit=0", headers=tenant.headers)
    read_only = await make_key(session, tenant, ("consent:read",))
    forbidden = await client.post(
        "/v1/consent", json={}, headers={"Authorization": f"Bearer {read_only}"}
    )

    assert not_found.status_code == 404
    assert rate_limit(not_found) == (3000, 2999, 45)
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"] == {"limit": "must be greater than or equal to 1"}
    assert rate_limit(invalid) == (3000, 2998, 45)
    assert forbidden.status_code == 403
    assert rate_limit(forbidden) == (3000, 2997, 45)


async def test_the_organizations_own_limit_overrides_its_plans_default(client, session, frozen):
    by_plan = await make_tenant(session, plan="starter")
    overridden = await make_tenant(session, plan="starter")
    await set_rate_limit(session, overridden, 7)

    plan_default = await client.get("/v1/consent", headers=by_plan.headers)
    own = await client.get("/v1/consent", headers=overridden.headers)

    assert rate_limit(plan_default) == (600, 599, 45)
    assert rate_limit(own) == (7, 6, 45)


# --- the allowance per minute ------------------------------------------------


async def test_the_request_after_the_allowance_is_429_with_retry_after(client, session, frozen):
    tenant = await limited_tenant(session, 3)

    passed = [await client.get("/v1/consent", headers=tenant.headers) for _ in range(3)]
    refused = await client.get("/v1/consent", headers=tenant.headers)

    assert [r.status_code for r in passed] == [200, 200, 200]
    assert [rate_limit(r)[1] for r in passed] == [2, 1, 0]
    assert refused.status_code == 429
    assert refused.json() == rate_limited_body(refused)
    assert refused.headers["Retry-After"] == "45"
    assert rate_limit(refused) == (3, 0, 45)


async def test_a_refused_request_spends_nothing(client, session, frozen):
    tenant = await limited_tenant(session, 10)
    assert (await post_batch(client, tenant, 8)).status_code == 200

    too_many_for_what_is_left = await post_batch(client, tenant, 5)
    what_is_left = await post_batch(client, tenant, 2)

    assert too_many_for_what_is_left.status_code == 429
    assert too_many_for_what_is_left.headers["Retry-After"] == "45"
    assert rate_limit(too_many_for_what_is_left) == (10, 2, 45)
    assert what_is_left.status_code == 200
    assert what_is_left.json() == {"accepted": 2}
    assert rate_limit(what_is_left) == (10, 0, 45)


async def test_a_new_minute_starts_a_new_allowance(client, session, frozen):
    tenant = await limited_tenant(session, 2)
    for _ in range(2):
        await client.get("/v1/consent", headers=tenant.headers)
    assert (await client.get("/v1/consent", headers=tenant.headers)).status_code == 429

    clock.advance(timedelta(seconds=44))  # 12:00:59, still the same minute
    still_refused = await client.get("/v1/consent", headers=tenant.headers)
    clock.advance(timedelta(seconds=1))  # 12:01:00
    next_minute = await client.get("/v1/consent", headers=tenant.headers)

    assert still_refused.status_code == 429
    assert still_refused.headers["Retry-After"] == "1"
    assert next_minute.status_code == 200
    assert rate_limit(next_minute) == (2, 1, 60)


async def test_a_batch_larger_than_the_whole_allowance_is_422_naming_the_field(
    client, session, frozen
):
    tenant = await limited_tenant(session, 10)

    too_large = await post_batch(client, tenant, 11)
    whole_allowance = await post_batch(client, tenant, 10)

    assert too_large.status_code == 422
    assert too_large.json()["error"] == {
        "code": "VALIDATION_FAILED",
        "message": "validation failed",
        "request_id": too_large.headers["X-Request-Id"],
        "details": {
            "items": "at most 10 items per call: the organization's allowance is 10 per "
            "minute; split the batch"
        },
    }
    assert "Retry-After" not in too_large.headers
    assert rate_limit(too_large) == (10, 10, 45)  # nothing spent
    assert whole_allowance.status_code == 200
    assert rate_limit(whole_allowance) == (10, 0, 45)


async def test_an_endpoint_that_charges_its_own_cost_is_not_charged_one_more(
    client, session, frozen
):
    tenant = await limited_tenant(session, 10)

    invalid = await client.post("/v1/test/batch", json={}, headers=tenant.headers)
    three = await post_batch(client, tenant, 3)

    assert invalid.status_code == 422
    assert rate_limit(invalid) == (10, 10, 45)  # shown, not spent
    assert rate_limit(three) == (10, 7, 45)


async def test_two_organizations_do_not_share_a_window(client, session, frozen):
    spender = await limited_tenant(session, 1)
    other = await limited_tenant(session, 1)

    await client.get("/v1/consent", headers=spender.headers)
    spender_again = await client.get("/v1/consent", headers=spender.headers)
    other_first = await client.get("/v1/consent", headers=other.headers)

    assert spender_again.status_code == 429
    assert other_first.status_code == 200
    assert rate_limit(other_first) == (1, 0, 45)


async def test_windows_older_than_an_hour_are_deleted_when_a_new_one_opens(
    client, session, tenant, frozen
):
    await client.get("/v1/consent", headers=tenant.headers)
    clock.advance(timedelta(minutes=30))
    await client.get("/v1/consent", headers=tenant.headers)
    clock.advance(timedelta(minutes=45))
    await client.get("/v1/consent", headers=tenant.headers)
    await client.get("/v1/consent", headers=tenant.headers)

    windows = (
        await session.execute(
            select(RateLimitWindow.window_start, RateLimitWindow.spent)
            .where(RateLimitWindow.org_id == tenant.org_id)
            .order_by(RateLimitWindow.window_start)
        )
    ).all()
    assert [tuple(w) for w in windows] == [
        (datetime(2026, 5, 1, 12, 30, tzinfo=UTC), 1),
        (datetime(2026, 5, 1, 13, 15, tzinfo=UTC), 2),
    ]


# --- Redis (AGENTMESSAGE_REDIS_URL) -----------------------------------------------


@pytest.fixture
async def redis_clients(
    engine: AsyncEngine, connection: AsyncConnection, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two apps (as two server processes would be) sharing one Redis."""
    settings = Settings(
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        redis_url=redis_server.url,
    )
    apps = [_app(settings, engine, connection) for _ in range(2)]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        for app in apps
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for client, app in zip(clients, apps, strict=True):
            await client.aclose()
            await app.state.rate_limiter.close()


async def test_redis_holds_one_allowance_across_processes(redis_clients, session, frozen):
    first, second = redis_clients
    tenant = await limited_tenant(session, 3)
    other = await limited_tenant(session, 3)

    statuses = [
        (await client.get("/v1/consent", headers=tenant.headers)).status_code
        for client in (first, second, first)
    ]
    refused = await second.get("/v1/consent", headers=tenant.headers)
    other_org = await second.get("/v1/consent", headers=other.headers)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == rate_limited_body(refused)
    assert refused.headers["Retry-After"] == "45"
    assert rate_limit(refused) == (3, 0, 45)
    assert other_org.status_code == 200
    assert rate_limit(other_org) == (3, 2, 45)


async def test_redis_refusals_spend_nothing_and_a_new_minute_resets(redis_clients, session, frozen):
    first, second = redis_clients
    tenant = await limited_tenant(session, 10)

    spent = await post_batch(first, tenant, 8)
    too_large = await post_batch(second, tenant, 11)
    too_many = await post_batch(second, tenant, 5)
    what_is_left = await post_batch(first, tenant, 2)
    clock.advance(timedelta(seconds=45))
    next_minute = await post_batch(second, tenant, 10)

    assert rate_limit(spent) == (10, 2, 45)
    assert too_large.status_code == 422
    assert too_large.json()["error"]["details"] == {
        "items": "at most 10 items per call: the organization's allowance is 10 per minute; "
        "split the batch"
    }
    assert too_many.status_code == 429
    assert rate_limit(too_many) == (10, 2, 45)
    assert what_is_left.status_code == 200
    assert rate_limit(what_is_left) == (10, 0, 45)
    assert next_minute.status_code == 200
    assert rate_limit(next_minute) == (10, 0, 60)


# --- several real server processes on one PostgreSQL -----------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Servers:
    """Two `agentmessage serve` processes on one PostgreSQL database."""

    def __init__(self, database_url: str, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "AGENTMESSAGE_DATABASE_URL": database_url,
            "AGENTMESSAGE_SECRET_KEY": "multi-process-secret-0123456789",
            "AGENTMESSAGE_DATA_DIR": str(root),
        }
        self.env.pop("AGENTMESSAGE_REDIS_URL", None)
        self.urls: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def cli(self, *args: str) -> dict[str, Any]:
        result = subprocess.run(
            [AGENTMESSAGE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def start(self, count: int = 2, timeout: float = 60.0) -> None:
        # Migrated once up front, so the servers do not race each other to it.
        self.cli("migrate")
        for n in range(count):
            port = _free_port()
            log = (self.root / f"server-{n}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [AGENTMESSAGE, "serve", "--port", str(port)],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        for url, process in zip(self.urls, self.processes, strict=True):
            while True:
                assert process.poll() is None, f"server exited: {self.logs()}"
                assert time.monotonic() < deadline, f"server did not start: {self.logs()}"
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-1000:] for path in self.root.glob("server-*.log")
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)

    def new_key(self, rate_limit: int) -> str:
        org = self.cli("orgs", "create", "--name", "Hammered", "--rate-limit", str(rate_limit))
        key = self.cli("keys", "create", "--org", org["id"], "--scopes", "consent:read")
        return str(key["key"])


@pytest.fixture
def servers(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Servers]:
    url = postgres.create_database(f"am_ratelimit_{uuid.uuid4().hex[:12]}")
    servers = Servers(url, tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def test_two_server_processes_share_one_allowance(servers):
    allowance, requests = 50, 150

    async def hammer(key: str) -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.get(f"{servers.urls[n % 2]}/v1/consent", headers=headers)
                    for n in range(requests)
                )
            )

    # One clock minute is one window: a burst that straddles two minutes may
    # rightly pass twice the allowance, so it is run again with a fresh
    # organization (a fresh window) rather than waiting for the next minute.
    for _attempt in range(3):
        key = servers.new_key(allowance)
        minute = int(time.time() // 60)
        responses = await hammer(key)
        if int(time.time() // 60) == minute:
            break
    else:
        pytest.fail("every burst straddled a minute boundary")

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: allowance, 429: requests - allowance}
    for response in responses:
        assert response.headers["RateLimit-Limit"] == str(allowance)
        if response.status_code == 429:
            assert response.headers["RateLimit-Remaining"] == "0"
            assert 1 <= int(response.headers["Retry-After"]) <= 60
    remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in responses if r.is_success)
    assert remaining == list(range(allowance))  # each unit spent exactly once
