"""Helpers for the hosted-form tests: mint through the API, open and submit the page."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.fixtures.builders import Tenant

SEED_AGREEMENT = (
    "By submitting this form you agree to receive appointment reminders from Agentmessage. "
    "Msg & data rates may apply. Reply STOP to opt out."
)


def mint_body(
    tenant: Tenant, contact_number: str = "+15554443333", **fields: Any
) -> dict[str, Any]:
    """Seed 003's request for the tenant's number; override any field."""
    return {
        "phone_number_id": tenant.phone_number_id,
        "contact_number": contact_number,
        "agreement_text": SEED_AGREEMENT,
        **fields,
    }


async def mint(client: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/consent/hosted", json=mint_body(tenant, **fields), headers=tenant.headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def page_path(token: str) -> str:
    return f"/consent/{token}"


def path_of(url: str) -> str:
    return urlsplit(url).path


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def open_and_submit(
    client: httpx.AsyncClient,
    token: str,
    *,
    agree: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Open the page (its cookie goes into the client's jar), then submit it."""
    page = await client.get(page_path(token))
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page)}
    if agree:
        data["agree"] = "yes"
    return await client.post(page_path(token), data=data, headers=headers or {})


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))


async def consents(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = await client.get("/v1/consent", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def history(
    client: httpx.AsyncClient, tenant: Tenant, consent_id: str
) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])
