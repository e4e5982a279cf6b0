"""A reply in the contact's own words, through the real inbound path: revoked by a
rule, left alone, or queued for a person, whose decision is recorded."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.builders import Tenant, capture_body
from tests.messaging.helpers import reply

CONTACT = "+15554443333"


async def opted_in(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.post(
        "/v1/consent", json=capture_body(tenant, CONTACT), headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def allowed(client: httpx.AsyncClient, tenant: Tenant) -> tuple[bool, str]:
    body = {"phone_number_id": tenant.phone_number_id, "contact_numbers": [CONTACT]}
    response = await client.post("/v1/consent/check", json=body, headers=tenant.headers)
    (result,) = response.json()["results"]
    return result["allowed"], result["reason"]


async def history(
    client: httpx.AsyncClient, tenant: Tenant, consent_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/consent/{consent_id}/history", headers=tenant.headers)
    events: list[dict[str, Any]] = response.json()["data"]
    return events


async def test_stop_texting_me_please_opts_out_with_its_rule(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await opted_in(client, tenant)
    assert await allowed(client, tenant) == (True, "opted_in")
    outcome = await reply(client, tenant, "Stop texting me please", CONTACT)
    assert outcome["action"] == "opted_out"
    assert outcome["rule"] == "phrase:stop_texting_me" and outcome["keyword"] is None
    (confirmation,) = outcome["replies"]
    assert "unsubscribed" in confirmation["body"] and confirmation["to"] == CONTACT
    assert await allowed(client, tenant) == (False, "opted_out")
    last = (await history(client, tenant, consent_id))[-1]
    assert (last["type"], last["reason"], last["source"], last["consent_method"]) == (
        "opt_out", "phrase:stop_texting_me", "sms", "sms_keyword"
    )  # fmt: skip
    assert last["evidence"]["reply_text"] == "Stop texting me please"
    again = await reply(client, tenant, "please stop", CONTACT)
    assert again["action"] == "already_opted_out" and again["replies"] == []


async def test_spanish_and_clear_non_revocations(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await opted_in(client, tenant)
    for text in ("Can I stop by tomorrow?", "don't stop the deals coming", "Gracias!"):
        outcome = await reply(client, tenant, text, CONTACT)
        assert outcome["action"] == "stored", text
    assert await allowed(client, tenant) == (True, "opted_in")
    reviews = await client.get("/v1/consent/reviews", headers=tenant.headers)
    assert reviews.json()["data"] == []
    outcome = await reply(client, tenant, "No más mensajes por favor", CONTACT)
    assert (outcome["action"], outcome["rule"]) == ("opted_out", "phrase:no_mas_mensajes")


async def test_a_possible_revocation_is_reviewed_then_revoked(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    consent_id = await opted_in(client, tenant)
    outcome = await reply(client, tenant, "can I cancel?", CONTACT)
    assert (outcome["action"], outcome["rule"]) == ("possible_revocation", "review:cancel")
    assert await allowed(client, tenant) == (True, "opted_in")  # not until a person says so

    pending = (await client.get("/v1/consent/reviews", headers=tenant.headers)).json()["data"]
    assert [(r["body"], r["status"], r["rule"]) for r in pending] == [
        ("can I cancel?", "pending", "review:cancel")
    ]
    review_id = pending[0]["id"]
    theirs = await client.post(
        f"/v1/consent/reviews/{review_id}", json={"action": "revoke"}, headers=other_tenant.headers
    )
    assert theirs.status_code == 404
    decided = await client.post(
        f"/v1/consent/reviews/{review_id}", json={"action": "revoke"}, headers=tenant.headers
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "revoked" and decided.json()["consent_event_id"]
    assert await allowed(client, tenant) == (False, "opted_out")
    last = (await history(client, tenant, consent_id))[-1]
    assert (last["reason"], last["id"]) == ("review:revoke", decided.json()["consent_event_id"])
    assert last["evidence"]["reply_text"] == "can I cancel?"

    same = await client.post(
        f"/v1/consent/reviews/{review_id}", json={"action": "revoke"}, headers=tenant.headers
    )
    assert same.status_code == 200 and same.json() == decided.json()
    other = await client.post(
        f"/v1/consent/reviews/{review_id}", json={"action": "dismiss"}, headers=tenant.headers
    )
    assert other.status_code == 422
    assert other.json()["error"]["details"] == {"action": "the review was already decided: revoke"}
    assert len(await history(client, tenant, consent_id)) == 2
    assert (await client.get("/v1/consent/reviews", headers=tenant.headers)).json()["data"] == []


async def test_a_dismissed_review_changes_no_consent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await opted_in(client, tenant)
    await reply(client, tenant, "When does the sale end?", CONTACT)
    (review,) = (await client.get("/v1/consent/reviews", headers=tenant.headers)).json()["data"]
    dismissed = await client.post(
        f"/v1/consent/reviews/{review['id']}", json={"action": "dismiss"}, headers=tenant.headers
    )
    assert dismissed.json()["status"] == "dismissed"
    assert dismissed.json()["consent_event_id"] is None
    assert await allowed(client, tenant) == (True, "opted_in")
    assert len(await history(client, tenant, consent_id)) == 1
    listed = await client.get("/v1/consent/reviews?status=dismissed", headers=tenant.headers)
    assert [r["id"] for r in listed.json()["data"]] == [review["id"]]
    bad = await client.post(
        f"/v1/consent/reviews/{review['id']}", json={"action": "maybe"}, headers=tenant.headers
    )
    assert bad.status_code == 422
