"""Requests the messaging tests make again and again, and Twilio's signing."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from agentmessage.db.models import Message
from tests.fixtures.builders import Tenant

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token-0123456789"
# What Twilio calls: a proxy in front of us changes scheme and host.
PUBLIC_BASE_URL = "https://consent.example.com"

CONTACT = "+15554443333"
AGREEMENT = (
    "By replying YES you agree to receive appointment reminders from Agentmessage. "
    "Msg & data rates may apply. Reply STOP to opt out."
)


def challenge_body(tenant: Tenant, contact: str = CONTACT, **overrides: Any) -> dict[str, Any]:
    return {
        "phone_number_id": tenant.phone_number_id,
        "contact_number": contact,
        "agreement_text": AGREEMENT,
        **overrides,
    }


async def start_challenge(
    client: httpx.AsyncClient, tenant: Tenant, contact: str = CONTACT, **overrides: Any
) -> httpx.Response:
    return await client.post(
        "/v1/consent/double-opt-in",
        json=challenge_body(tenant, contact, **overrides),
        headers=tenant.headers,
    )


async def reply(
    client: httpx.AsyncClient, tenant: Tenant, body: str, contact: str = CONTACT
) -> dict[str, Any]:
    """The contact texts ``body`` to the tenant's number, through the sandbox."""
    r = await client.post(
        "/v1/sandbox/inbound",
        json={"from": contact, "to": tenant.number.number, "body": body},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def consent_of(
    client: httpx.AsyncClient, tenant: Tenant, contact: str = CONTACT
) -> dict[str, Any] | None:
    r = await client.get("/v1/consent", params={"contact_number": contact}, headers=tenant.headers)
    assert r.status_code == 200
    records = r.json()["data"]
    return records[0] if records else None


async def history_of(client: httpx.AsyncClient, tenant: Tenant, consent_id: str) -> list[Any]:
    r = await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)
    assert r.status_code == 200
    return list(r.json()["data"])


async def message(client: httpx.AsyncClient, tenant: Tenant, message_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/messages/{message_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def outbound_to(
    session: AsyncSession, tenant: Tenant, contact: str = CONTACT
) -> list[Message]:
    rows = await session.scalars(
        select(Message)
        .where(
            Message.org_id == tenant.org_id,
            Message.direction == "outbound",
            Message.to_number == contact,
        )
        .order_by(Message.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def count_messages(session: AsyncSession, tenant: Tenant) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Message).where(Message.org_id == tenant.org_id)
        )
        or 0
    )


def sign(path: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it, over the URL it called."""
    return RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params)


async def twilio_webhook(
    client: httpx.AsyncClient, path: str, params: dict[str, str], signature: str | None = None
) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature if signature is not None else sign(path, params)}
    if signature == "":
        headers = {}
    return await client.post(path, data=params, headers=headers)


def inbound_params(
    tenant: Tenant, body: str, *, sid: str, contact: str = CONTACT
) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS (its documented fields)."""
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": tenant.number.number,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": contact,
        "ApiVersion": "2010-04-01",
    }
