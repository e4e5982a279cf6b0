"""Tenancy across every endpoint: another organization's ids answer exactly like
unknown ones, its sender numbers are not found, and nothing of it changes.

The first test keeps this matrix complete: a new route taking an id fails it
until the matrix covers the route.
"""

from __future__ import annotations

from typing import Any

import httpx

from agentmessage.app import create_app
from agentmessage.kit.ids import new_id
from agentmessage.settings import Settings
from tests.fixtures.builders import Tenant, capture_body
from tests.messaging.helpers import challenge_body

# (method, path) of every route addressing one resource by id, and the body a
# POST to it needs.
ID_ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/v1/consent/{id}"): None,
    ("DELETE", "/v1/consent/{id}"): None,
    ("GET", "/v1/consent/{id}/history"): None,
    ("GET", "/v1/consent/{consent_id}/proof"): None,
    ("GET", "/v1/consent/decisions/{id}"): None,
    ("POST", "/v1/consent/reviews/{id}"): {"action": "revoke"},
    ("GET", "/v1/messages/{id}"): None,
}
# Addressed by a signed token that names its organization (tests/hosted).
TOKEN_ROUTES = {"/consent/{token}"}


def test_every_route_with_an_id_is_in_the_matrix(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]
    with_ids = {
        (method.upper(), path)
        for path, operations in paths.items()
        if "{" in path and path not in TOKEN_ROUTES
        for method in operations
    }
    assert with_ids == set(ID_ROUTES)


async def their_resources(client: httpx.AsyncClient, them: Tenant) -> dict[str, str]:
    """One of each kind of resource, made by the other organization."""
    captured = await client.post(
        "/v1/consent", json=capture_body(them, "+15554440001"), headers=them.headers
    )
    body = {"phone_number_id": them.phone_number_id, "contact_numbers": ["+15554440001"]}
    decision = await client.post("/v1/consent/check", json=body, headers=them.headers)
    inbound = await client.post(
        "/v1/sandbox/inbound",
        json={"from": "+15554440001", "to": them.number.number, "body": "can I cancel?"},
        headers=them.headers,
    )
    assert inbound.json()["action"] == "possible_revocation"
    (review,) = (await client.get("/v1/consent/reviews", headers=them.headers)).json()["data"]
    return {
        "consent": captured.json()["id"],
        "decision": decision.json()["decision_id"],
        "review": review["id"],
        "message": inbound.json()["message"]["id"],
    }


def path_for(path: str, ids: dict[str, str]) -> str:
    if "decisions" in path:
        return path.format(id=ids["decision"])
    if "reviews" in path:
        return path.format(id=ids["review"])
    if "messages" in path:
        return path.format(id=ids["message"])
    return path.format(id=ids["consent"], consent_id=ids["consent"])


async def test_another_organizations_ids_answer_like_unknown_ones_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await their_resources(client, other_tenant)
    unknown = dict.fromkeys(theirs, str(new_id()))
    for (method, path), body in ID_ROUTES.items():
        answers = []
        for ids in (theirs, unknown):
            response = await client.request(
                method, path_for(path, ids), json=body, headers=tenant.headers
            )
            answers.append(response)
        mine, nobodys = answers
        assert mine.status_code == nobodys.status_code == 404, (method, path, mine.text)
        assert mine.json()["error"]["code"] == nobodys.json()["error"]["code"] == "NOT_FOUND"
        assert mine.json()["error"]["message"] == nobodys.json()["error"]["message"]

    # Their consent is still opted in, their review still pending.
    record = await client.get(f"/v1/consent/{theirs['consent']}", headers=other_tenant.headers)
    assert record.json()["opted_in"] is True
    pending = await client.get("/v1/consent/reviews", headers=other_tenant.headers)
    assert [r["id"] for r in pending.json()["data"]] == [theirs["review"]]
    # And none of it shows in our lists.
    assert (await client.get("/v1/consent", headers=tenant.headers)).json()["data"] == []
    assert (await client.get("/v1/consent/reviews", headers=tenant.headers)).json()["data"] == []


async def test_another_organizations_sender_number_is_not_found_anywhere(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    number = other_tenant.phone_number_id
    capture = {**capture_body(tenant, "+15554440002"), "phone_number_id": number}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/consent", capture),
        ("/v1/consent/check", {"phone_number_id": number, "contact_numbers": ["+15554440002"]}),
        (
            "/v1/consent/revocations",
            {
                "contact_number": "+15554440002",
                "phone_number_id": number,
                "channel": "email",
                "received_at": "2026-11-20T12:00:00Z",
            },
        ),
        ("/v1/consent/double-opt-in", {**challenge_body(tenant), "phone_number_id": number}),
        (
            "/v1/consent/hosted",
            {
                "phone_number_id": number,
                "contact_number": "+15554440002",
                "agreement_text": "Reply STOP to opt out.",
            },
        ),
    ]
    for path, body in requests:
        response = await client.post(path, json=body, headers=tenant.headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    bulk = await client.post(
        "/v1/consent/bulk", json={"records": [capture]}, headers=tenant.headers
    )
    assert bulk.status_code == 200, bulk.text
    assert [r["code"] for r in bulk.json()["rejected"]] == ["NOT_FOUND"]
    # Their number holds nothing of ours.
    listed = await client.get("/v1/consent", headers=other_tenant.headers)
    assert listed.json()["data"] == []
