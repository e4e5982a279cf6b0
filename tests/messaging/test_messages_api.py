"""GET /v1/messages/{id}: track an SMS sent or received."""

from __future__ import annotations

from tests.fixtures.builders import make_key
from tests.messaging.helpers import CONTACT, message, reply, start_challenge


async def test_anonymous_is_401(client, tenant):
    sent = (await start_challenge(client, tenant)).json()
    r = await client.get(f"/v1/messages/{sent['confirmation_message_id']}")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


async def test_key_without_messages_read_is_403(client, session, tenant):
    sent = (await start_challenge(client, tenant)).json()
    key = await make_key(session, tenant, ("consent:read", "consent:write", "messages:write"))
    r = await client.get(
        f"/v1/messages/{sent['confirmation_message_id']}",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"


async def test_another_organizations_message_is_404(client, tenant, other_tenant):
    sent = (await start_challenge(client, tenant)).json()
    r = await client.get(
        f"/v1/messages/{sent['confirmation_message_id']}", headers=other_tenant.headers
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_an_unknown_id_is_404_and_a_malformed_one_400(client, tenant):
    r = await client.get(
        "/v1/messages/0190a1b2-c3d4-e5f6-a7b8-c9d0e1f2a3b5", headers=tenant.headers
    )
    assert r.status_code == 404
    r = await client.get("/v1/messages/not-a-uuid", headers=tenant.headers)
    assert r.status_code == 400
    assert r.json()["error"]["details"] == {"id": "must be a UUID"}


async def test_an_outbound_message_moves_from_queued_to_delivered(client, tenant, dispatcher):
    sent = (await start_challenge(client, tenant)).json()
    queued = await message(client, tenant, sent["confirmation_message_id"])
    assert queued["status"] == "queued"
    await dispatcher.run_once()
    delivered = await message(client, tenant, sent["confirmation_message_id"])
    assert delivered["status"] == "delivered"
    assert delivered["error_code"] is None
    assert delivered["created_at"] == queued["created_at"]


async def test_an_inbound_message_is_readable_too(client, tenant):
    inbound = (await reply(client, tenant, "Hello there"))["message"]
    got = await message(client, tenant, inbound["id"])
    assert got == inbound
    assert got["direction"] == "inbound"
    assert got["from"] == CONTACT
    assert got["to"] == tenant.number.number
    assert got["status"] == "received"
