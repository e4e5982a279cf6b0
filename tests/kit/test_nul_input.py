"""U+0000 in a request body: PostgreSQL text cannot hold it, so every endpoint
refuses it as bad input (422) and writes nothing, on both databases."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.builders import Tenant, capture_body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/consent", "agreement_text"),
        ("/v1/consent", "user_agent"),
        ("/v1/sandbox/inbound", "body"),
        ("/v1/consent/revocations", "text"),
    ],
)
async def test_a_nul_character_is_422_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, path: str, field: str
) -> None:
    bodies = {
        "/v1/consent": capture_body(tenant, "+15554440009"),
        "/v1/sandbox/inbound": {"from": "+15554440009", "to": tenant.number.number, "body": "hi"},
        "/v1/consent/revocations": {"contact_number": "+15554440009", "channel": "email",
                                    "received_at": "2026-11-20T12:00:00Z", "text": "stop"},
    }  # fmt: skip
    body = bodies[path]
    target = body["evidence"] if field in ("agreement_text", "user_agent") else body
    target[field] = "Reply STOP\x00 to opt out."
    response = await client.post(path, json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert error["details"] == {"body": "must not contain the NUL character (U+0000)"}
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_an_escaped_backslash_before_u0000_is_just_text(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = capture_body(tenant, "+15554440009", user_agent="C:\\u0000\\agent")
    response = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    stored = await client.get(
        f"/v1/consent/{response.json()['id']}/history", headers=tenant.headers
    )
    assert stored.json()["data"][0]["evidence"]["user_agent"] == "C:\\u0000\\agent"
