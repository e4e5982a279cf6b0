"""The error envelope on every path, and request ids on every response."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import APIRouter

from agentmessage.app import create_app
from agentmessage.kit.routing import TransactionalRoute
from tests.conftest import TestDatabase

ULID_ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _is_ulid(value: str) -> bool:
    return len(value) == 26 and set(value) <= ULID_ALPHABET


async def test_every_response_has_a_ulid_request_id(client, tenant):
    for r in (
        await client.get("/healthz"),
        await client.get("/v1/consent", headers=tenant.headers),
        await client.get("/v1/consent"),
    ):
        assert _is_ulid(r.headers["x-request-id"])


async def test_unknown_route_is_404_in_the_envelope(client):
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json() == {
        "success": False,
        "error": {
            "code": "NOT_FOUND",
            "message": "not found",
            "request_id": r.headers["x-request-id"],
        },
    }


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_a_trailing_slash_is_404_never_a_redirect_to_the_callers_host(client, tenant, method):
    # Starlette's redirect built Location from the Host header: an open redirect.
    headers = {**tenant.headers, "Host": "evil.example"}
    r = await client.request(method, "/v1/consent/", headers=headers)
    assert r.status_code == 404
    assert "location" not in r.headers
    assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_wrong_method_is_405_in_the_envelope(client, tenant):
    r = await client.put("/v1/consent", headers=tenant.headers)
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in r.headers["allow"]


async def test_unexpected_failure_is_500_without_a_trace_and_logged_with_its_id(
    engine, connection, settings, caplog
):
    app = create_app(settings, TestDatabase(engine, connection))
    boom = APIRouter(route_class=TransactionalRoute)

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError("SELECT secret FROM contacts WHERE number = '+15554443333'")

    app.include_router(boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with caplog.at_level(logging.INFO):
            r = await client.get("/boom")
    assert r.status_code == 500
    request_id = r.headers["x-request-id"]
    assert r.json() == {
        "success": False,
        "error": {"code": "INTERNAL", "message": "internal error", "request_id": request_id},
    }
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "unhandled RuntimeError at test_errors.py" in logged
    assert request_id in logged
    assert "SELECT" not in logged and "+15554443333" not in logged
    assert all(record.exc_info is None for record in caplog.records)


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}


async def test_readiness_fails_with_503_when_the_database_is_gone(settings):
    from agentmessage.db.engine import Database, create_engine

    # Nothing listens on port 1.
    broken = Database(create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    app = create_app(settings, broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/readyz")
    await broken.dispose()
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "UNAVAILABLE"
    assert "127.0.0.1" not in r.text


async def test_openapi_describes_every_endpoint_with_seed_examples(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    assert set(paths["/v1/consent"]) == {"get", "post"}
    assert set(paths["/v1/consent/{id}"]) == {"get", "delete"}
    assert "get" in paths["/v1/consent/{id}/history"]
    delete = paths["/v1/consent/{id}"]["delete"]
    assert {"200", "400", "401", "403", "404"} <= set(delete["responses"])
    post = paths["/v1/consent"]["post"]
    examples = post["responses"]["403"]["content"]["application/json"]["examples"]
    assert examples["PLAN_REQUIRED"]["value"]["error"]["code"] == "PLAN_REQUIRED"
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_a_body_without_json_content_type_says_how_to_send_it(client, tenant):
    r = await client.post(
        "/v1/consent",
        content=b'{"a": 1}',
        headers={**tenant.headers, "Content-Type": "text/plain"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {
        "body": "must be a JSON object sent with Content-Type: application/json"
    }


async def test_deeply_nested_json_is_400_and_changes_nothing(client, tenant):
    body = b'{"evidence": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = await client.post(
        "/v1/consent", content=body, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["meta"]["total"] == 0


async def test_405_names_the_methods_of_the_literal_path_not_of_a_template(client, tenant):
    r = await client.get("/v1/consent/bulk/extra", headers=tenant.headers)
    assert r.status_code == 404
    r = await client.put("/v1/consent/bulk", headers=tenant.headers)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
