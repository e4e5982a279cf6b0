"""POST /v1/consent/hosted (seed 003): mint a signed hosted-form link."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agentmessage.app import create_app
from agentmessage.hosted.token import agreement_digest, verify
from agentmessage.kit.clock import clock
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.fixtures.builders import make_key, make_tenant
from tests.fixtures.edge_values import INVISIBLE_TEXTS
from tests.hosted.forms import SEED_AGREEMENT, mint_body, unb64

NOW = datetime(2026, 4, 27, 12, 0, tzinfo=UTC)


async def test_anonymous_is_401(client, tenant):
    r = await client.post("/v1/consent/hosted", json=mint_body(tenant))
    assert r.status_code == 401
    assert r.json()["error"] == {
        "code": "UNAUTHORIZED",
        "message": "authentication failed",
        "request_id": r.headers["x-request-id"],
    }


async def test_key_without_write_scope_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read", "messages:write"))
    r = await client.post(
        "/v1/consent/hosted", json=mint_body(tenant), headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert r.json()["error"]["message"] == "missing required scope"


async def test_seed_request_is_201_with_token_url_and_expiry(client, tenant, settings):
    with clock.frozen(NOW):
        r = await client.post("/v1/consent/hosted", json=mint_body(tenant), headers=tenant.headers)
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"token", "url", "expires_at"}
    assert body["url"] == f"http://127.0.0.1:8000/consent/{body['token']}"
    assert body["expires_at"] == "2026-04-27T13:00:00Z"  # the default hour, as in the seed
    claims = verify(body["token"], settings.signing_secret, NOW)
    assert claims.org == tenant.org_id
    assert str(claims.phone_number_id) == tenant.phone_number_id
    assert claims.contact_number == "+15554443333"
    assert claims.agreement_sha256 == agreement_digest(SEED_AGREEMENT)
    assert unb64(body["token"].split(".")[0])["alg"] == "HS256"


async def test_the_url_follows_the_public_base_url(engine, connection, session, tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        public_base_url="https://consent.example.com/sms/",
    )
    tenant = await make_tenant(session)
    app = create_app(settings, TestDatabase(engine, connection))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/v1/consent/hosted", json=mint_body(tenant), headers=tenant.headers)
    assert r.json()["url"] == f"https://consent.example.com/sms/consent/{r.json()['token']}"


@pytest.mark.parametrize(
    ("expires_in", "expires_at"), [(60, "2026-04-27T12:01:00Z"), (86400, "2026-04-28T12:00:00Z")]
)
async def test_expires_in_bounds_are_accepted(client, tenant, expires_in, expires_at):
    with clock.frozen(NOW + timedelta(microseconds=999_999)):
        r = await client.post(
            "/v1/consent/hosted",
            json=mint_body(tenant, expires_in=expires_in),
            headers=tenant.headers,
        )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"] == expires_at  # whole seconds, as the token says


async def test_every_call_mints_a_new_token(client, tenant, settings):
    with clock.frozen(NOW):
        first = await client.post(
            "/v1/consent/hosted", json=mint_body(tenant), headers=tenant.headers
        )
        second = await client.post(
            "/v1/consent/hosted", json=mint_body(tenant), headers=tenant.headers
        )
    ids = {
        verify(r.json()["token"], settings.signing_secret, NOW).token_id for r in (first, second)
    }
    assert len(ids) == 2


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"expires_in": 59}, "expires_in", "must be greater than or equal to 60"),
        ({"expires_in": 86401}, "expires_in", "must be less than or equal to 86400"),
        ({"expires_in": "soon"}, "expires_in", "must be an integer"),
        ({"contact_number": "5554443333"}, "contact_number", "must be E.164"),
        ({"contact_number": "+1 555 444 3333"}, "contact_number", "must be E.164"),
        ({"phone_number_id": "abc"}, "phone_number_id", "must be a UUID"),
        ({"agreement_text": ""}, "agreement_text", "must be at least 1 character"),
        ({"agreement_text": "   "}, "agreement_text", "must not be blank"),
        ({"agreement_text": "x" * 4001}, "agreement_text", "must be at most 4000 characters"),
        ({"agreement_text": None}, "agreement_text", "must be a string"),
        ({"colour": "red"}, "colour", "is not a known field"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(client, tenant, fields, field, reason):
    r = await client.post(
        "/v1/consent/hosted", json=mint_body(tenant, **fields), headers=tenant.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert r.json()["error"]["details"][field] == reason


@pytest.mark.parametrize("text", INVISIBLE_TEXTS)
async def test_an_agreement_text_with_nothing_visible_is_blank(client, tenant, text):
    r = await client.post(
        "/v1/consent/hosted", json=mint_body(tenant, agreement_text=text), headers=tenant.headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"] == {"agreement_text": "must not be blank"}


async def test_missing_fields_are_422(client, tenant):
    r = await client.post("/v1/consent/hosted", json={}, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {
        "phone_number_id": "is required",
        "contact_number": "is required",
        "agreement_text": "is required",
    }


async def test_an_agreement_of_4000_characters_is_accepted(client, tenant):
    body = mint_body(tenant, agreement_text="é" * 4000)
    r = await client.post("/v1/consent/hosted", json=body, headers=tenant.headers)
    assert r.status_code == 201
    assert len(r.json()["url"]) < 1000  # the text lives in the database, not in the URL


async def test_a_phone_number_of_another_organization_is_404(client, tenant, other_tenant):
    body = {**mint_body(tenant), "phone_number_id": other_tenant.phone_number_id}
    r = await client.post("/v1/consent/hosted", json=body, headers=tenant.headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
    assert r.json()["error"]["message"] == "not found"


async def test_an_unknown_phone_number_is_404(client, tenant):
    body = {**mint_body(tenant), "phone_number_id": str(uuid.uuid4())}
    r = await client.post("/v1/consent/hosted", json=body, headers=tenant.headers)
    assert r.status_code == 404


@pytest.mark.parametrize("plan", ["starter", "legacy_basic", "payg"])
async def test_hosted_forms_work_on_every_plan(client, session, plan):
    tenant = await make_tenant(session, plan=plan)
    r = await client.post("/v1/consent/hosted", json=mint_body(tenant), headers=tenant.headers)
    assert r.status_code == 201


async def test_idempotency_key_replays_the_same_token(client, tenant):
    headers = {**tenant.headers, "Idempotency-Key": "mint-1"}
    first = await client.post("/v1/consent/hosted", json=mint_body(tenant), headers=headers)
    again = await client.post("/v1/consent/hosted", json=mint_body(tenant), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(
        "/v1/consent/hosted", json=mint_body(tenant, expires_in=120), headers=headers
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_openapi_documents_the_endpoint_with_the_seed_example(client):
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/consent/hosted"]["post"]
    assert operation["summary"] == "Mint a hosted-form consent token"
    assert {"201", "400", "401", "403", "404", "409", "422", "429"} <= set(operation["responses"])
    request = spec["components"]["schemas"]["HostedFormRequest"]
    assert request["examples"][0]["contact_number"] == "+15554443333"
    # Optional, its default in words: generated clients read `default` as "always sent".
    assert "expires_in" not in request["required"]
    assert request["properties"]["expires_in"]["description"].endswith(
        "Default when left out: 3600."
    )
    response = spec["components"]["schemas"]["HostedFormToken"]
    assert response["examples"][0]["expires_at"] == "2026-04-27T13:00:00Z"
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    # The public page is documented too, as HTML.
    assert "text/html" in spec["paths"]["/consent/{token}"]["get"]["responses"]["200"]["content"]
