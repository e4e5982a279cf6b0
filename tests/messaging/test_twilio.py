"""The Twilio provider against the stand-in server, and Twilio's signed webhooks."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from agentmessage.app import create_app
from agentmessage.db.models import Message, MessageAttempt
from agentmessage.kit.clock import clock
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.messaging.conftest import messaging_settings
from tests.messaging.helpers import (
    AUTH_TOKEN,
    CONTACT,
    PUBLIC_BASE_URL,
    consent_of,
    count_messages,
    history_of,
    inbound_params,
    message,
    outbound_to,
    sign,
    start_challenge,
    twilio_webhook,
)

T0 = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)
SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"


async def attempts_of(session, message_id: str):
    rows = await session.scalars(
        select(MessageAttempt)
        .where(MessageAttempt.message_id == uuid.UUID(message_id))
        .order_by(MessageAttempt.attempt)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def test_a_challenge_is_sent_through_twilio_with_a_status_callback(
    twilio_client, tenant, twilio_dispatcher, standin
):
    sent = (await start_challenge(twilio_client, tenant)).json()
    report = await twilio_dispatcher.run_once()
    assert report.sent == 1
    (created,) = standin.created
    assert created["To"] == CONTACT
    assert created["From"] == tenant.number.number
    assert "reply YES to confirm" in created["Body"]
    assert created["StatusCallback"] == f"{PUBLIC_BASE_URL}/webhooks/twilio/status"
    tracked = await message(twilio_client, tenant, sent["confirmation_message_id"])
    assert tracked["status"] == "sent"  # Twilio took it; delivery is reported later


async def test_a_status_callback_reports_delivery_and_never_goes_backwards(
    twilio_client, session, tenant, twilio_dispatcher, standin
):
    sent = (await start_challenge(twilio_client, tenant)).json()
    await twilio_dispatcher.run_once()
    (row,) = await outbound_to(session, tenant)
    callback = {
        "MessageSid": row.provider_message_id,
        "MessageStatus": "delivered",
        "AccountSid": standin.account_sid,
        "From": tenant.number.number,
        "To": CONTACT,
        "ApiVersion": "2010-04-01",
    }
    r = await twilio_webhook(twilio_client, STATUS, callback)
    assert r.status_code == 204
    assert (await message(twilio_client, tenant, sent["confirmation_message_id"]))[
        "status"
    ] == "delivered"
    late = {**callback, "MessageStatus": "sent"}
    assert (await twilio_webhook(twilio_client, STATUS, late)).status_code == 204
    assert (await message(twilio_client, tenant, sent["confirmation_message_id"]))[
        "status"
    ] == "delivered"


async def test_an_undelivered_callback_fails_the_message_with_twilios_code(
    twilio_client, session, tenant, twilio_dispatcher
):
    sent = (await start_challenge(twilio_client, tenant)).json()
    await twilio_dispatcher.run_once()
    (row,) = await outbound_to(session, tenant)
    callback = {"MessageSid": row.provider_message_id, "MessageStatus": "undelivered"}
    callback["ErrorCode"] = "30003"
    assert (await twilio_webhook(twilio_client, STATUS, callback)).status_code == 204
    failed = await message(twilio_client, tenant, sent["confirmation_message_id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "30003")


async def test_a_callback_for_an_unknown_message_changes_nothing(twilio_client):
    callback = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    assert (await twilio_webhook(twilio_client, STATUS, callback)).status_code == 204


async def test_a_rejected_send_fails_at_once_with_twilios_error_code(
    twilio_client, session, tenant, twilio_dispatcher, standin
):
    standin.fail(CONTACT, 400, 21211, f"Invalid 'To' Phone Number: {CONTACT}")
    sent = (await start_challenge(twilio_client, tenant)).json()
    report = await twilio_dispatcher.run_once()
    assert (report.sent, report.failed, report.retried) == (0, 1, 0)
    failed = await message(twilio_client, tenant, sent["confirmation_message_id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "21211")
    (attempt,) = await attempts_of(session, failed["id"])
    assert (attempt.outcome, attempt.error_code) == ("failed", "21211")
    assert "Invalid 'To' Phone Number" in attempt.error_message
    assert await twilio_dispatcher.run_once() == type(report)()  # nothing left to send
    assert standin.created == []


async def test_a_server_error_is_retried_with_backoff_then_sent(
    twilio_client, session, tenant, twilio_dispatcher, standin
):
    standin.fail(CONTACT, 500, 20500, "Internal Server Error")
    with clock.frozen(T0):
        sent = (await start_challenge(twilio_client, tenant)).json()
        first = await twilio_dispatcher.run_once()
        assert first.retried == 1
        waiting = await message(twilio_client, tenant, sent["confirmation_message_id"])
        assert (waiting["status"], waiting["error_code"]) == ("queued", "20500")
        # Not due before its backoff (5 s after the first attempt).
        clock.advance(timedelta(seconds=4))
        assert (await twilio_dispatcher.run_once()).claimed == 0
        clock.advance(timedelta(seconds=1))
        second = await twilio_dispatcher.run_once()
    assert second.sent == 1
    done = await message(twilio_client, tenant, sent["confirmation_message_id"])
    assert (done["status"], done["error_code"]) == ("sent", None)
    attempts = await attempts_of(session, done["id"])
    assert [(a.attempt, a.outcome, a.error_code) for a in attempts] == [
        (1, "retry", "20500"),
        (2, "sent", None),
    ]
    assert standin.sends_to()[CONTACT] == 1


async def test_the_last_failed_attempt_fails_the_message_with_the_providers_code(
    twilio_client, session, tenant, twilio_dispatcher, standin
):
    standin.fail(CONTACT, 503, 20503, "Service Unavailable", times=10)
    with clock.frozen(T0):
        sent = (await start_challenge(twilio_client, tenant)).json()
        for _ in range(3):  # max attempts in these settings; backoff 5 s, 10 s
            await twilio_dispatcher.run_once()
            clock.advance(timedelta(minutes=1))
        assert (await twilio_dispatcher.run_once()).claimed == 0
    failed = await message(twilio_client, tenant, sent["confirmation_message_id"])
    assert (failed["status"], failed["error_code"]) == ("failed", "20503")
    assert [a.outcome for a in await attempts_of(session, failed["id"])] == [
        "retry",
        "retry",
        "failed",
    ]


async def test_an_unreachable_provider_is_retried(tmp_path, engine, connection, tenant):
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = messaging_settings(tmp_path, f"http://127.0.0.1:{port}", sms_provider="twilio")
    database = TestDatabase(engine, connection)
    dispatcher = Dispatcher.from_settings(database, settings)
    transport = httpx.ASGITransport(app=create_app(settings, database))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        sent = (await start_challenge(client, tenant)).json()
        try:
            report = await dispatcher.run_once()
        finally:
            await dispatcher.provider.aclose()
        assert report.retried == 1
        waiting = await message(client, tenant, sent["confirmation_message_id"])
    assert (waiting["status"], waiting["error_code"]) == ("queued", "provider_unreachable")


async def test_a_signed_inbound_stop_opts_out_and_answers_empty_twiml(
    twilio_client, session, tenant, twilio_dispatcher, standin
):
    r = await twilio_webhook(
        twilio_client, SMS, inbound_params(tenant, "STOP", sid="SM" + "1" * 32)
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    record = await consent_of(twilio_client, tenant)
    assert (record["opted_in"], record["consent_method"], record["source"]) == (
        False,
        "sms_keyword",
        "sms",
    )
    (event,) = await history_of(twilio_client, tenant, record["id"])
    assert event["reason"] == "keyword:STOP"
    await twilio_dispatcher.run_once()
    (confirmation,) = standin.created
    assert confirmation["To"] == CONTACT and "unsubscribed" in confirmation["Body"]


async def test_a_retried_webhook_is_handled_once(twilio_client, session, tenant):
    params = inbound_params(tenant, "STOP", sid="SM" + "2" * 32)
    for _ in range(3):
        assert (await twilio_webhook(twilio_client, SMS, params)).status_code == 200
    inbound = await session.scalars(
        select(Message).where(Message.org_id == tenant.org_id, Message.direction == "inbound")
    )
    assert len(list(inbound)) == 1
    assert len(await outbound_to(session, tenant)) == 1  # one confirmation
    record = await consent_of(twilio_client, tenant)
    assert len(await history_of(twilio_client, tenant, record["id"])) == 1


async def test_a_signed_yes_confirms_a_challenge_sent_through_twilio(
    twilio_client, tenant, twilio_dispatcher
):
    await start_challenge(twilio_client, tenant)
    await twilio_dispatcher.run_once()
    r = await twilio_webhook(
        twilio_client, SMS, inbound_params(tenant, "Yes!", sid="SM" + "3" * 32)
    )
    assert r.status_code == 200
    record = await consent_of(twilio_client, tenant)
    assert (record["opted_in"], record["consent_method"]) == (True, "double_opt_in")


async def test_a_forged_signature_is_403_and_changes_nothing(twilio_client, session, tenant):
    params = inbound_params(tenant, "STOP", sid="SM" + "4" * 32)
    forged = sign(SMS, params, token="not-the-auth-token")
    r = await twilio_webhook(twilio_client, SMS, params, signature=forged)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert r.json()["error"]["message"] == "missing or invalid X-Twilio-Signature"
    assert await count_messages(session, tenant) == 0
    assert await consent_of(twilio_client, tenant) is None


async def test_a_missing_signature_is_403(twilio_client, session, tenant):
    params = inbound_params(tenant, "STOP", sid="SM" + "5" * 32)
    r = await twilio_webhook(twilio_client, SMS, params, signature="")
    assert r.status_code == 403
    assert await count_messages(session, tenant) == 0


async def test_a_signature_over_other_parameters_is_403(twilio_client, session, tenant):
    """A valid signature for a START message does not carry a STOP body."""
    params = inbound_params(tenant, "START", sid="SM" + "6" * 32)
    signature = sign(SMS, params)
    r = await twilio_webhook(twilio_client, SMS, {**params, "Body": "STOP"}, signature=signature)
    assert r.status_code == 403
    assert await count_messages(session, tenant) == 0


async def test_the_signature_is_checked_against_the_public_url_not_the_host_seen(
    twilio_client, session, tenant
):
    """Twilio signed https://consent.example.com/...; we are reached as http://testserver."""
    params = inbound_params(tenant, "HELP", sid="SM" + "7" * 32)
    seen = "http://testserver" + SMS
    signed_for_the_host_seen = RequestValidator(AUTH_TOKEN).compute_signature(seen, params)
    r = await twilio_webhook(twilio_client, SMS, params, signature=signed_for_the_host_seen)
    assert r.status_code == 403
    r = await twilio_webhook(twilio_client, SMS, params)
    assert r.status_code == 200


async def test_a_forged_status_callback_is_403(twilio_client, session, tenant, twilio_dispatcher):
    sent = (await start_challenge(twilio_client, tenant)).json()
    await twilio_dispatcher.run_once()
    (row,) = await outbound_to(session, tenant)
    callback = {"MessageSid": row.provider_message_id, "MessageStatus": "failed"}
    r = await twilio_webhook(twilio_client, STATUS, callback, signature="forged")
    assert r.status_code == 403
    assert (await message(twilio_client, tenant, sent["confirmation_message_id"]))[
        "status"
    ] == "sent"


async def test_webhooks_are_403_when_no_auth_token_is_configured(
    engine, connection, session, tenant, tmp_path
):
    bare = Settings(data_dir=tmp_path, public_base_url=PUBLIC_BASE_URL)
    transport = httpx.ASGITransport(app=create_app(bare, TestDatabase(engine, connection)))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        params = inbound_params(tenant, "STOP", sid="SM" + "8" * 32)
        r = await twilio_webhook(client, SMS, params)
    assert r.status_code == 403
    assert await count_messages(session, tenant) == 0


async def test_an_sms_to_a_number_nobody_has_is_ignored(twilio_client, session, tenant):
    params = {**inbound_params(tenant, "STOP", sid="SM" + "9" * 32), "To": "+15550000000"}
    r = await twilio_webhook(twilio_client, SMS, params)
    assert r.status_code == 200
    assert await count_messages(session, tenant) == 0


async def test_a_signed_request_without_message_sid_is_400(twilio_client, tenant):
    params = {"From": CONTACT, "To": tenant.number.number, "Body": "STOP"}
    r = await twilio_webhook(twilio_client, SMS, params)
    assert r.status_code == 400
    assert r.json()["error"]["details"] == {"body": "needs MessageSid, From and To"}
