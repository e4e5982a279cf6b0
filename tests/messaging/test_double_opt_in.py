"""POST /v1/consent/double-opt-in (seed 002) and the YES reply that confirms it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmessage.kit.clock import clock
from tests.fixtures.builders import capture_body, make_key, make_record, make_tenant
from tests.fixtures.edge_values import INVISIBLE_TEXTS
from tests.messaging.helpers import (
    AGREEMENT,
    CONTACT,
    challenge_body,
    consent_of,
    history_of,
    message,
    outbound_to,
    reply,
    start_challenge,
)

T0 = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)
SEED_CONFIRMATION = (
    "Reply YES to confirm you'd like to receive appointment reminders. "
    "Reply STOP to opt out, HELP for help."
)


async def test_anonymous_is_401(client, tenant):
    r = await client.post("/v1/consent/double-opt-in", json=challenge_body(tenant))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


async def test_key_without_consent_write_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read", "messages:read", "messages:write"))
    r = await client.post(
        "/v1/consent/double-opt-in",
        json=challenge_body(tenant),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"


async def test_a_new_challenge_is_202_with_the_queued_confirmation_message(client, tenant):
    with clock.frozen(T0):
        r = await start_challenge(client, tenant, confirmation_text=SEED_CONFIRMATION)
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {
        "consent_pending_id", "confirmation_message_id", "expires_at", "reused",
        "already_opted_in",
    }  # fmt: skip
    assert body["expires_at"] == "2026-04-27T12:00:00Z"  # 24 hours
    assert body["reused"] is False and body["already_opted_in"] is False
    sms = await message(client, tenant, body["confirmation_message_id"])
    assert sms == {
        "id": body["confirmation_message_id"],
        "direction": "outbound",
        "from": tenant.number.number,
        "to": CONTACT,
        "body": SEED_CONFIRMATION,
        "status": "queued",
        "error_code": None,
        "created_at": "2026-04-26T12:00:00Z",
        "updated_at": "2026-04-26T12:00:00Z",
    }


async def test_the_default_text_is_ctia_compliant(client, tenant):
    r = await start_challenge(client, tenant)
    sms = await message(client, tenant, r.json()["confirmation_message_id"])
    text = sms["body"]
    org_name = text.split(":")[0]
    assert org_name.startswith("Org ")  # the program: the organization's name
    for words in ("reply YES to confirm", "STOP to opt out", "HELP for help"):
        assert words in text
    assert "Msg & data rates may apply" in text
    assert "Msg frequency varies" in text


async def test_a_second_request_reuses_the_open_challenge_without_a_second_sms(
    client, session, tenant
):
    first = (await start_challenge(client, tenant)).json()
    again = await start_challenge(client, tenant)
    assert again.status_code == 200
    assert again.json() == {**first, "reused": True}
    assert len(await outbound_to(session, tenant)) == 1


async def test_an_opted_in_contact_is_200_already_opted_in_and_gets_no_sms(client, session, tenant):
    await make_record(session, tenant, contact_number=CONTACT, opted_in=True)
    r = await start_challenge(client, tenant)
    assert r.status_code == 200
    assert r.json() == {
        "consent_pending_id": None,
        "confirmation_message_id": None,
        "expires_at": None,
        "reused": False,
        "already_opted_in": True,
    }
    assert await outbound_to(session, tenant) == []


async def test_an_opted_out_contact_gets_no_sms_and_a_422_naming_start_or_the_hosted_form(
    client, session, tenant
):
    await make_record(session, tenant, contact_number=CONTACT, opted_in=False)
    r = await start_challenge(client, tenant)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    reason = error["details"]["contact_number"]
    assert "reply START" in reason and "hosted form" in reason
    assert await outbound_to(session, tenant) == []


async def test_another_organizations_phone_number_is_404(client, session, tenant, other_tenant):
    r = await client.post(
        "/v1/consent/double-opt-in",
        json=challenge_body(tenant, phone_number_id=other_tenant.phone_number_id),
        headers=tenant.headers,
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
    assert await outbound_to(session, other_tenant) == []


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("Reply Y to confirm. STOP to opt out, HELP for help.", "YES"),
        ("Reply YES to confirm. HELP for help.", "STOP"),
        ("Reply YES to confirm, STOP to opt out.", "HELP"),
        ("Reply YESSIR to confirm, STOPPING, HELPFUL", "YES, STOP, HELP"),
    ],
)
async def test_a_confirmation_text_must_name_yes_stop_and_help(
    client, session, tenant, text, missing
):
    r = await start_challenge(client, tenant, confirmation_text=text)
    assert r.status_code == 422
    reason = r.json()["error"]["details"]["confirmation_text"]
    assert reason.endswith(f"missing: {missing}")
    assert await outbound_to(session, tenant) == []


async def test_keywords_in_a_confirmation_text_are_matched_in_any_case(client, tenant):
    text = "Text yes to join. Text stop to quit, help for info."
    r = await start_challenge(client, tenant, confirmation_text=text)
    assert r.status_code == 202
    assert (await message(client, tenant, r.json()["confirmation_message_id"]))["body"] == text


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"contact_number": "5554443333"}, "contact_number", "must be E.164"),
        ({"agreement_text": ""}, "agreement_text", "must be at least 1 character"),
        ({"agreement_text": "   "}, "agreement_text", "must not be blank"),
        ({"agreement_text": "x" * 4001}, "agreement_text", "must be at most 4000 characters"),
        (
            {"confirmation_text": "YES STOP HELP " + "x" * 1600},
            "confirmation_text",
            "must be at most 1600 characters",
        ),
        ({"phone_number_id": "nope"}, "phone_number_id", "must be a UUID"),
        ({"extra": 1}, "extra", "is not a known field"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(client, tenant, change, field, reason):
    r = await client.post(
        "/v1/consent/double-opt-in",
        json={**challenge_body(tenant), **change},
        headers=tenant.headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][field] == reason


@pytest.mark.parametrize("field", ["agreement_text", "confirmation_text"])
@pytest.mark.parametrize("text", INVISIBLE_TEXTS)
async def test_a_text_with_nothing_visible_is_blank_and_sends_nothing(client, tenant, field, text):
    r = await client.post(
        "/v1/consent/double-opt-in",
        json={**challenge_body(tenant), field: text},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"] == {field: "must not be blank"}


async def test_works_on_every_plan(client, session):
    starter = await make_tenant(session, plan="starter")
    r = await start_challenge(client, starter)
    assert r.status_code == 202


async def test_idempotency_key_replays_the_first_answer(client, session, tenant):
    headers = {**tenant.headers, "Idempotency-Key": "challenge-1"}
    body = challenge_body(tenant)
    first = await client.post("/v1/consent/double-opt-in", json=body, headers=headers)
    again = await client.post("/v1/consent/double-opt-in", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await outbound_to(session, tenant)) == 1


async def test_the_whole_flow_challenge_reply_yes_opted_in_with_evidence(
    client, tenant, dispatcher
):
    with clock.frozen(T0):
        started = (await start_challenge(client, tenant)).json()
        sent = await dispatcher.run_once()
        assert sent.sent == 1
        sms = await message(client, tenant, started["confirmation_message_id"])
        assert sms["status"] == "delivered"  # the sandbox delivers at once
        clock.advance(timedelta(minutes=3))
        answer = await reply(client, tenant, " yes! ")

    assert answer["action"] == "double_opt_in_confirmed"
    assert answer["keyword"] == "YES"
    assert answer["replies"] == []
    inbound = answer["message"]
    assert inbound["direction"] == "inbound" and inbound["status"] == "received"
    assert inbound["from"] == CONTACT and inbound["to"] == tenant.number.number

    record = await consent_of(client, tenant)
    assert record["id"] == answer["consent_id"]
    assert record["opted_in"] is True
    assert record["consent_method"] == "double_opt_in"
    assert record["source"] == "sms"
    assert record["opted_in_at"] == "2026-04-26T12:03:00Z"  # the reply's time
    (event,) = await history_of(client, tenant, record["id"])
    assert event["type"] == "opt_in"
    assert event["reason"] == "double_opt_in:YES"
    assert event["consent_method"] == "double_opt_in"
    assert event["source"] == "sms"
    assert event["actor"] == {
        "type": "contact",
        "contact_number": CONTACT,
        "message_id": inbound["id"],
    }
    evidence = event["evidence"]
    assert evidence["agreement_text"] == AGREEMENT
    assert evidence["confirmation_text"] == sms["body"]
    assert evidence["inbound_message_id"] == inbound["id"]
    assert evidence["reply_text"] == " yes! "
    assert evidence["replied_at"] == "2026-04-26T12:03:00Z"
    assert evidence["challenge_id"] == started["consent_pending_id"]
    assert evidence["confirmation_message_id"] == started["confirmation_message_id"]

    # Confirmed: the contact is opted in, so a new request sends nothing.
    again = await start_challenge(client, tenant)
    assert again.json()["already_opted_in"] is True


@pytest.mark.parametrize("text", ["Y", "confirm", "CONFIRM.", "Yes"])
async def test_y_and_confirm_confirm_too(client, tenant, text):
    await start_challenge(client, tenant)
    answer = await reply(client, tenant, text)
    assert answer["action"] == "double_opt_in_confirmed"
    assert (await consent_of(client, tenant))["opted_in"] is True


async def test_a_reply_after_24_hours_confirms_nothing(client, session, tenant):
    with clock.frozen(T0):
        first = (await start_challenge(client, tenant)).json()
        clock.advance(timedelta(hours=24))
        answer = await reply(client, tenant, "YES")
        assert answer["action"] == "challenge_expired"
        assert answer["consent_id"] is None
        assert await consent_of(client, tenant) is None
        # The expired challenge no longer blocks a new one, which gets its own SMS.
        again = await start_challenge(client, tenant)
    assert again.status_code == 202
    assert again.json()["consent_pending_id"] != first["consent_pending_id"]
    assert len(await outbound_to(session, tenant)) == 2


async def test_a_reply_a_second_before_expiry_confirms(client, tenant):
    with clock.frozen(T0):
        await start_challenge(client, tenant)
        clock.advance(timedelta(hours=24) - timedelta(seconds=1))
        answer = await reply(client, tenant, "YES")
    assert answer["action"] == "double_opt_in_confirmed"


async def test_an_unanswered_challenge_is_replaced_after_expiry_without_a_reply(client, tenant):
    with clock.frozen(T0):
        first = (await start_challenge(client, tenant)).json()
        clock.advance(timedelta(hours=25))
        again = await start_challenge(client, tenant)
    assert again.status_code == 202
    assert again.json()["consent_pending_id"] != first["consent_pending_id"]
    assert again.json()["expires_at"] == "2026-04-28T13:00:00Z"


async def test_yes_without_a_challenge_changes_nothing(client, tenant):
    answer = await reply(client, tenant, "YES")
    assert answer["action"] == "no_open_challenge"
    assert await consent_of(client, tenant) is None


async def test_a_challenge_belongs_to_its_sender_number(client, session, tenant):
    """YES to another of the organization's numbers confirms nothing."""
    from agentmessage.orgs.service import create_phone_number

    second = await create_phone_number(session, org_id=tenant.org_id, number="+15550199999")
    await session.commit()
    await start_challenge(client, tenant)
    r = await client.post(
        "/v1/sandbox/inbound",
        json={"from": CONTACT, "to": second.number, "body": "YES"},
        headers=tenant.headers,
    )
    assert r.json()["action"] == "no_open_challenge"
    assert await consent_of(client, tenant) is None


async def test_a_contact_who_captured_an_opt_out_then_confirms_is_opted_in(client, tenant):
    """The YES is the contact's own, later act: it is not refused as stale."""
    with clock.frozen(T0):
        await start_challenge(client, tenant)
        out = capture_body(tenant, CONTACT, opted_in=False, captured_at="2026-04-26T12:01:00Z")
        r = await client.post("/v1/consent", json=out, headers=tenant.headers)
        assert r.status_code == 201
        clock.advance(timedelta(minutes=2))
        # The opt-out did not come by SMS, so the open challenge still stands.
        answer = await reply(client, tenant, "YES")
    assert answer["action"] == "double_opt_in_confirmed"
    assert (await consent_of(client, tenant))["opted_in"] is True


async def test_the_openapi_document_shows_the_seed_examples(client):
    doc = (await client.get("/openapi.json")).json()
    responses = doc["paths"]["/v1/consent/double-opt-in"]["post"]["responses"]
    created = responses["202"]["content"]["application/json"]["example"]
    assert created["reused"] is False
    reused = responses["200"]["content"]["application/json"]["examples"]["reused"]["value"]
    assert reused["reused"] is True
    for status in ("401", "403", "404", "422", "429"):
        assert status in responses
