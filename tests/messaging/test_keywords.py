"""STOP/START/HELP on any inbound SMS (SPEC.md "Keywords on any inbound SMS"), played
through POST /v1/sandbox/inbound, and how replies are normalized."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmessage.auth.service import create_key
from agentmessage.kit.clock import clock
from agentmessage.messaging.keywords import keyword_of, normalize
from agentmessage.orgs.service import create_organization, create_phone_number
from tests.fixtures.builders import Tenant, make_key, make_record
from tests.messaging.helpers import (
    CONTACT,
    consent_of,
    history_of,
    message,
    outbound_to,
    reply,
    start_challenge,
)

T0 = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        (" yes! ", "YES"),
        ("Yes.", "YES"),
        ("y", "Y"),
        ("STOP!!!", "STOP"),
        ("\tstop \n", "STOP"),
        ("Stop 🙏", "STOP"),
        ("opt out", "OPTOUT"),
        ("Opt-Out.", "OPTOUT"),
        ("OPTOUT", "OPTOUT"),
        ("opt   out", "OPTOUT"),
        ("stop please", "STOP PLEASE"),
    ],
)
def test_replies_are_normalized(text, normalized):
    assert normalize(text) == normalized


@pytest.mark.parametrize(
    "text", ["stop please", "don't stop", "yes please", "STOPP", "", "?!", "OPT"]
)
def test_only_a_whole_keyword_is_a_keyword(text):
    assert keyword_of(text) is None


async def test_sandbox_inbound_anonymous_is_401(client, tenant):
    r = await client.post(
        "/v1/sandbox/inbound", json={"from": CONTACT, "to": tenant.number.number, "body": "STOP"}
    )
    assert r.status_code == 401


async def test_sandbox_inbound_without_messages_write_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read", "consent:write", "messages:read"))
    r = await client.post(
        "/v1/sandbox/inbound",
        json={"from": CONTACT, "to": tenant.number.number, "body": "STOP"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403
    assert await consent_of(client, tenant) is None


async def test_sandbox_inbound_to_a_number_not_yours_is_422(client, tenant, other_tenant):
    r = await client.post(
        "/v1/sandbox/inbound",
        json={"from": CONTACT, "to": other_tenant.number.number, "body": "STOP"},
        headers=tenant.headers,
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {"to": "is not a sender number of your organization"}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"from": "555", "to": "+15550100001", "body": "x"}, "from", "must be E.164"),
        (
            {"from": CONTACT, "to": "+15550100001", "body": ""},
            "body",
            "must be at least 1 character",
        ),
        (
            {"from": CONTACT, "to": "+15550100001", "body": "x" * 1601},
            "body",
            "must be at most 1600 characters",
        ),
    ],
)
async def test_sandbox_inbound_validates_its_fields(client, tenant, body, field, reason):
    r = await client.post("/v1/sandbox/inbound", json=body, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"][field] == reason


async def test_a_plain_reply_is_stored_and_changes_nothing(client, tenant):
    answer = await reply(client, tenant, "what time is my appointment?")
    assert answer["action"] == "stored"
    assert answer["keyword"] is None and answer["replies"] == []
    stored = await message(client, tenant, answer["message"]["id"])
    assert stored["direction"] == "inbound"
    assert stored["status"] == "received"
    assert stored["body"] == "what time is my appointment?"
    assert await consent_of(client, tenant) is None


async def test_stop_opts_out_creating_the_record_and_sends_one_confirmation(
    client, tenant, dispatcher
):
    with clock.frozen(T0):
        answer = await reply(client, tenant, "Stop.")
    assert answer["action"] == "opted_out"
    assert answer["keyword"] == "STOP"
    record = await consent_of(client, tenant)
    assert record["id"] == answer["consent_id"]
    assert record["opted_in"] is False
    assert record["opted_out_at"] == "2026-04-26T12:00:00Z"
    assert record["consent_method"] == "sms_keyword"
    assert record["source"] == "sms"
    (event,) = await history_of(client, tenant, record["id"])
    assert event["type"] == "opt_out"
    assert event["reason"] == "keyword:STOP"
    assert event["evidence"]["inbound_message_id"] == answer["message"]["id"]
    assert event["evidence"]["reply_text"] == "Stop."
    assert event["actor"]["type"] == "contact"

    (confirmation,) = answer["replies"]
    assert confirmation["to"] == CONTACT and confirmation["from"] == tenant.number.number
    assert "unsubscribed" in confirmation["body"] and "START" in confirmation["body"]
    with clock.frozen(T0 + timedelta(minutes=1)):  # within the confirmation's 5 minutes
        report = await dispatcher.run_once()
    assert (report.sent, report.refused) == (1, 0)  # the one message an opted-out contact gets
    assert (await message(client, tenant, confirmation["id"]))["status"] == "delivered"

    again = await reply(client, tenant, "STOP")
    assert again["action"] == "already_opted_out"
    assert again["replies"] == []
    assert len(await history_of(client, tenant, record["id"])) == 1


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("STOPALL", "STOPALL"),
        ("unsubscribe", "UNSUBSCRIBE"),
        ("Cancel", "CANCEL"),
        ("end", "END"),
        ("QUIT!", "QUIT"),
        ("revoke", "REVOKE"),
        ("optout", "OPTOUT"),
        ("opt out", "OPTOUT"),
        ("Opt-Out", "OPTOUT"),
    ],
)
async def test_every_opt_out_word_opts_out(client, tenant, text, keyword):
    answer = await reply(client, tenant, text)
    assert answer["action"] == "opted_out"
    record = await consent_of(client, tenant)
    assert record["opted_in"] is False
    (event,) = await history_of(client, tenant, record["id"])
    assert event["reason"] == f"keyword:{keyword}"


async def test_stop_opts_out_an_opted_in_record_and_sets_the_method(client, session, tenant):
    await make_record(session, tenant, contact_number=CONTACT, consent_method="checkbox")
    answer = await reply(client, tenant, "STOP")
    record = await consent_of(client, tenant)
    assert record["id"] == answer["consent_id"]
    assert record["opted_in"] is False
    assert record["consent_method"] == "sms_keyword"
    assert [e["reason"] for e in await history_of(client, tenant, record["id"])] == [
        "api:capture",
        "keyword:STOP",
    ]


async def test_stop_is_for_the_number_texted_only(client, session, tenant):
    second = await create_phone_number(session, org_id=tenant.org_id, number="+15550199998")
    await session.commit()
    await make_record(session, tenant, contact_number=CONTACT, phone_number_id=second.id)
    await reply(client, tenant, "STOP")
    r = await client.get(
        "/v1/consent",
        params={"contact_number": CONTACT, "opted_in": "true"},
        headers=tenant.headers,
    )
    (still_in,) = r.json()["data"]
    assert still_in["phone_number_id"] == str(second.id)


async def test_stop_cancels_the_open_challenge_and_its_sms_is_never_sent(
    client, session, tenant, dispatcher
):
    challenge = (await start_challenge(client, tenant)).json()
    answer = await reply(client, tenant, "STOP")
    # The challenge SMS was still queued: the dispatcher refuses it, and sends
    # only the confirmation.
    report = await dispatcher.run_once()
    assert (report.sent, report.refused) == (1, 1)
    refused = await message(client, tenant, challenge["confirmation_message_id"])
    assert refused["status"] == "failed"
    assert refused["error_code"] == "contact_opted_out"
    assert (await message(client, tenant, answer["replies"][0]["id"]))["status"] == "delivered"
    assert (await reply(client, tenant, "YES"))["action"] == "no_open_challenge"
    assert (await consent_of(client, tenant))["opted_in"] is False


async def test_after_stop_nothing_but_the_confirmation_is_sent(client, session, tenant, dispatcher):
    await reply(client, tenant, "STOP")
    help_answer = await reply(client, tenant, "HELP")
    assert help_answer["action"] == "help"
    assert help_answer["replies"] == []  # not queued: the contact opted out
    challenge = await start_challenge(client, tenant)
    assert challenge.status_code == 422
    await dispatcher.run_once()
    sent = await outbound_to(session, tenant)
    assert [m.purpose for m in sent] == ["opt_out_confirmation"]


async def test_start_opts_back_in_and_confirms(client, tenant, dispatcher):
    with clock.frozen(T0):
        await reply(client, tenant, "STOP")
        clock.advance(timedelta(minutes=10))
        answer = await reply(client, tenant, "start")
    assert answer["action"] == "opted_in"
    assert answer["keyword"] == "START"
    record = await consent_of(client, tenant)
    assert record["opted_in"] is True
    assert record["opted_in_at"] == "2026-04-26T12:10:00Z"
    assert record["consent_method"] == "sms_keyword"
    assert record["source"] == "sms"
    events = await history_of(client, tenant, record["id"])
    assert [(e["type"], e["reason"]) for e in events] == [
        ("opt_out", "keyword:STOP"),
        ("opt_in", "keyword:START"),
    ]
    (confirmation,) = answer["replies"]
    assert "resubscribed" in confirmation["body"]
    report = await dispatcher.run_once()
    # The STOP confirmation did not go within its 5 minutes (nothing dispatched
    # until now): it is never sent late. START's has no deadline.
    assert (report.sent, report.refused, report.skipped_late) == (1, 0, 1)


async def test_unstop_opts_back_in_and_start_when_opted_in_changes_nothing(client, tenant):
    await reply(client, tenant, "STOP")
    assert (await reply(client, tenant, "UNSTOP"))["action"] == "opted_in"
    again = await reply(client, tenant, "START")
    assert again["action"] == "already_opted_in"
    assert again["replies"] == []


async def test_help_replies_with_the_organizations_help_text(client, session):
    org = await create_organization(
        session, name="Demo Dental", help_text="Demo Dental: call 555-0100. Reply STOP to stop."
    )
    number = await create_phone_number(session, org_id=org.id, number="+15550100777")
    key = await create_key(session, org_id=org.id, scopes=["messages:write", "messages:read"])
    await session.commit()
    tenant = Tenant(org.id, org.plan, number, key.plain, key.key.id)
    answer = await reply(client, tenant, "help")
    assert answer["action"] == "help"
    (help_reply,) = answer["replies"]
    assert help_reply["body"] == "Demo Dental: call 555-0100. Reply STOP to stop."
    assert help_reply["from"] == "+15550100777"
    info = await reply(client, tenant, "INFO")
    assert info["replies"][0]["body"] == help_reply["body"]


async def test_help_without_a_help_text_names_the_organization(client, tenant):
    (help_reply,) = (await reply(client, tenant, "HELP"))["replies"]
    assert help_reply["body"].startswith("Org ")
    assert "Reply STOP to opt out" in help_reply["body"]
    assert "Msg & data rates may apply" in help_reply["body"]


async def test_the_sandbox_is_404_when_the_provider_is_twilio(twilio_client, tenant):
    r = await twilio_client.post(
        "/v1/sandbox/inbound",
        json={"from": CONTACT, "to": tenant.number.number, "body": "STOP"},
        headers=tenant.headers,
    )
    assert r.status_code == 404
    assert "AGENTMESSAGE_SMS_PROVIDER" in r.json()["error"]["message"]
