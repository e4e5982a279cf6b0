"""Hostile input (issue 7, item 5): each gets its documented error (SPEC.md "Errors")
and changes nothing in the database.

Held elsewhere, so not repeated here:
- hosted-form JWT with alg none, a wrong key, expired, claims swapped, tampered:
  tests/hosted/test_pages.py::test_a_bad_link_gets_a_clear_error_page_and_records_nothing
  (through GET and POST of the page, nothing recorded) and tests/hosted/test_token.py
  (test_alg_none_is_invalid, test_other_algorithms_are_refused_even_with_our_key,
  test_claims_swapped_between_two_tokens_are_invalid, test_a_wrong_signature_is_invalid);
- forged Twilio webhooks: tests/messaging/test_twilio.py::
  test_a_forged_signature_is_403_and_changes_nothing, test_a_missing_signature_is_403,
  test_a_signature_over_other_parameters_is_403, test_a_forged_status_callback_is_403;
  a webhook retried at once: test_a_retried_webhook_is_handled_once;
- an Idempotency-Key of 256 bytes (and empty): tests/kit/test_idempotency.py::
  test_a_key_too_long_or_empty_is_422;
- deeply nested JSON: tests/test_errors.py::test_deeply_nested_json_is_400_and_changes_nothing;
- NUL characters: tests/kit/test_nul_input.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agentmessage.app import create_app
from agentmessage.db.base import Base
from agentmessage.kit.clock import utcnow
from agentmessage.kit.timefmt import format_rfc3339
from tests.conftest import TestDatabase
from tests.fixtures.builders import Tenant, capture_body, make_record
from tests.messaging.conftest import messaging_settings
from tests.messaging.helpers import inbound_params, sign

# Tables whose rows a refused request may still touch by design: the rate limiter
# charges every authenticated request.
CHARGED = {"rate_limit_windows"}


async def snapshot(session, *, ignore: frozenset[str] = frozenset()) -> dict[str, list[Any]]:
    """Every row of every table (small in a test), to compare before and after."""
    tables = {}
    for name, table in sorted(Base.metadata.tables.items()):
        if name in CHARGED or name in ignore:
            continue
        result = await session.execute(select(table).order_by(*table.primary_key.columns))
        tables[name] = [tuple(row) for row in result]
    return tables


@pytest.fixture
async def before(session, tenant) -> AsyncIterator[dict[str, list[Any]]]:
    """One record of the tenant's exists; the database as it was before the test."""
    await make_record(session, tenant, contact_number="+15554440001")
    await session.commit()
    yield await snapshot(session)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert error["request_id"] == r.headers["x-request-id"]
    return error


# -- SQL and control characters in every list filter -----------------------------------------

HOSTILE_VALUES = {
    "sql quote": "' OR '1'='1",
    "sql comment": "1; DROP TABLE consent_records; --",
    "sql union": "x' UNION SELECT key_hash FROM api_keys --",
    "like wildcards": "%_%",
    "crlf": "x\r\nX-Injected: 1",
    "control characters": "\x01\x07\x1b[31m\x7f",
    "right-to-left override": "\u202e3333",
    "unicode digits": "\u0662\u0660\u0662\u0666",
    "long": "9" * 5000,
}

# (path, filter) for every filter of every list endpoint, and of the other GETs with
# query parameters.
LIST_FILTERS = [
    ("/v1/consent", "cursor"),
    ("/v1/consent", "limit"),
    ("/v1/consent", "contact_number"),
    ("/v1/consent", "phone_number_id"),
    ("/v1/consent", "opted_in"),
    ("/v1/consent", "since"),
    ("/v1/consent", "consent_method"),
    ("/v1/consent/reviews", "status"),
    ("/v1/consent/reviews", "limit"),
    ("/v1/compliance/revocations", "from"),
    ("/v1/compliance/revocations", "to"),
    ("/v1/proof/consistency", "first"),
    ("/v1/proof/consistency", "second"),
    ("/v1/proof/checkpoint", "format"),
]


@pytest.mark.parametrize(("path", "name"), LIST_FILTERS, ids=[f"{p}?{n}" for p, n in LIST_FILTERS])
async def test_hostile_list_filters_are_422_and_change_nothing(
    client, session, tenant, before, path, name
):
    for label, value in HOSTILE_VALUES.items():
        params = {name: value}
        if path == "/v1/proof/consistency":  # both are required
            params = {"first": "1", "second": "1", **params}
        r = await client.get(path, params=params, headers=tenant.headers)
        error = assert_error(r, 422, "VALIDATION_FAILED")
        assert name in error["details"], (label, error)
        assert "SELECT" not in r.text and "Traceback" not in r.text
    assert await snapshot(session) == before


async def test_a_record_listing_with_hostile_filters_never_shows_more(client, tenant, before):
    """A filter that is valid yet hostile in shape matches nothing, never everything."""
    r = await client.get(
        "/v1/consent", params={"contact_number": "+15554440001"}, headers=tenant.headers
    )
    assert r.json()["meta"]["total"] == 1
    for value in ("+1555444000%", "+1555444000_", "+15554440001' OR '1'='1"):
        r = await client.get(
            "/v1/consent", params={"contact_number": value}, headers=tenant.headers
        )
        assert r.status_code == 422


# -- Headers of 10,000 characters --------------------------------------------------------------

LONG = "a" * 10_000


async def test_a_10000_character_authorization_header_is_401_and_changes_nothing(
    client, session, tenant, before
):
    for value in (f"Bearer {LONG}", f"Bearer am_live_{LONG}", LONG):
        r = await client.post(
            "/v1/consent", json=capture_body(tenant), headers={"Authorization": value}
        )
        assert_error(r, 401, "UNAUTHORIZED")
        assert LONG not in r.text
    assert await snapshot(session) == before


async def test_10000_character_headers_elsewhere_change_nothing_they_should_not(
    client, session, tenant, before
):
    headers = {
        **tenant.headers,
        "X-Request-Id": LONG,
        "X-Forwarded-For": LONG,
        "Content-Language": LONG,
        "X-Custom": LONG,
    }
    r = await client.get("/v1/consent", headers=headers)
    assert r.status_code == 200
    assert r.headers["x-request-id"] != LONG  # ours, never the caller's
    r = await client.post(
        "/v1/consent",
        json=capture_body(tenant),
        headers={**tenant.headers, "Idempotency-Key": LONG},
    )
    error = assert_error(r, 422, "VALIDATION_FAILED")
    assert error["details"] == {"Idempotency-Key": "must be at most 255 characters"}
    assert await snapshot(session) == before


# -- Idempotency-Keys with odd bytes -----------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [b"\xff\xfe\xfd", "é-ключ-鍵".encode(), b"k\x01\x1f\x7fy", b"  spaced  ", b"\xc3(" * 10],
    ids=["latin-1", "utf-8", "control", "spaces", "invalid-utf-8"],
)
async def test_an_idempotency_key_of_odd_bytes_is_a_key_like_any_other(
    client, session, tenant, before, key
):
    """Compared by its bytes: the retry replays, another key runs, nothing breaks."""
    body = capture_body(tenant, "+15554440002")
    headers = {**tenant.headers, "Idempotency-Key": key}
    first = await client.post("/v1/consent", json=body, headers=headers)
    retry = await client.post("/v1/consent", json=body, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 201), first.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    other = await client.post(
        "/v1/consent", json=body, headers={**tenant.headers, "Idempotency-Key": key + b"!"}
    )
    assert other.status_code == 200 and "idempotent-replayed" not in other.headers


async def test_an_idempotency_key_over_255_bytes_but_not_characters_is_422(
    client, session, tenant, before
):
    """The limit is in bytes: 128 two-byte characters are 256 bytes."""
    key = ("é" * 128).encode()
    r = await client.post(
        "/v1/consent", json=capture_body(tenant), headers={**tenant.headers, "Idempotency-Key": key}
    )
    assert_error(r, 422, "VALIDATION_FAILED")
    assert await snapshot(session) == before


# -- Phone numbers in every shape but E.164, on every endpoint that takes one ------------------

NOT_E164 = {
    "local": "5554443333",
    "national punctuation": "(555) 444-3333",
    "letters": "+1555CALLNOW",
    "too long": "+1234567890123456",
    "too short": "+1555",
    "leading zero": "+0155544433",
    "spaces": "+1 555 444 3333",
    "dashes": "+1-555-444-3333",
    "arabic-indic digits": "+1\u0665\u0665\u0665\u0664\u0664\u0664\u0663\u0663\u0663\u0663",
    "fullwidth digits": "+1\uff15\uff15\uff15\uff14\uff14\uff14\uff13\uff13\uff13\uff13",
    "trailing newline": "+15554443333\n",
    "leading space": " +15554443333",
    "double plus": "++15554443333",
    "empty": "",
    "plus only": "+",
}


def phone_requests(tenant: Tenant, number: str) -> dict[str, tuple[str, str, dict[str, Any], str]]:
    """name: (method, path, JSON body, field named in details)."""
    now = format_rfc3339(utcnow())
    return {
        "capture": ("POST", "/v1/consent", capture_body(tenant, number), "contact_number"),
        "double opt-in": (
            "POST",
            "/v1/consent/double-opt-in",
            {
                "phone_number_id": tenant.phone_number_id,
                "contact_number": number,
                "agreement_text": "Reply YES for reminders. STOP to opt out, HELP for help.",
            },
            "contact_number",
        ),
        "hosted form": (
            "POST",
            "/v1/consent/hosted",
            {
                "phone_number_id": tenant.phone_number_id,
                "contact_number": number,
                "agreement_text": "Reminders. Reply STOP to opt out.",
            },
            "contact_number",
        ),
        "revocation": (
            "POST",
            "/v1/consent/revocations",
            {"contact_number": number, "channel": "email", "received_at": now},
            "contact_number",
        ),
        "deactivation": (
            "POST",
            "/v1/deactivations",
            {"deactivations": [{"number": number, "deactivated_at": "2026-04-20"}]},
            "deactivations[0].number",
        ),
        "sandbox inbound from": (
            "POST",
            "/v1/sandbox/inbound",
            {"from": number, "to": tenant.number.number, "body": "STOP"},
            "from",
        ),
        "sandbox inbound to": (
            "POST",
            "/v1/sandbox/inbound",
            {"from": "+15554440003", "to": number, "body": "STOP"},
            "to",
        ),
    }


ENDPOINTS = [
    "capture",
    "double opt-in",
    "hosted form",
    "revocation",
    "deactivation",
    "sandbox inbound from",
    "sandbox inbound to",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_a_number_that_is_not_e164_is_422_and_changes_nothing(
    client, session, tenant, before, endpoint
):
    for label, number in NOT_E164.items():
        method, path, body, field = phone_requests(tenant, number)[endpoint]
        r = await client.request(method, path, json=body, headers=tenant.headers)
        error = assert_error(r, 422, "VALIDATION_FAILED")
        assert error["details"] == {field: "must be E.164"}, (label, error)
    assert await snapshot(session) == before


async def test_a_number_that_is_not_e164_is_refused_in_list_filter_bulk_and_check(
    client, session, tenant, before
):
    for label, number in NOT_E164.items():
        r = await client.get(
            "/v1/consent", params={"contact_number": number}, headers=tenant.headers
        )
        error = assert_error(r, 422, "VALIDATION_FAILED")
        assert error["details"] == {"contact_number": "must be E.164"}, label
        r = await client.post(
            "/v1/consent/bulk",
            json={"records": [capture_body(tenant, number)]},
            headers=tenant.headers,
        )
        assert r.status_code == 200, (label, r.text)
        assert r.json() == {
            "accepted": 0,
            "rejected": [
                {"index": 0, "code": "VALIDATION_FAILED", "reason": "contact_number: must be E.164"}
            ],
        }, label
    assert await snapshot(session) == before
    # A send decision is stored by design; it answers invalid_number and allows nothing.
    r = await client.post(
        "/v1/consent/check",
        json={
            "phone_number_id": tenant.phone_number_id,
            "contact_numbers": list(NOT_E164.values()),
        },
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["allowed"], x["reason"]) for x in results] == [(False, "invalid_number")] * len(
        NOT_E164
    )
    decisions = frozenset({"consent_decisions"})
    assert await snapshot(session, ignore=decisions) == {
        k: v for k, v in before.items() if k not in decisions
    }


# -- Twilio webhooks replayed later --------------------------------------------------------------

SMS = "/webhooks/twilio/sms"


@pytest.fixture
async def twilio_client(engine, connection, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    # The dispatcher never runs here (no lifespan): nothing reaches this address.
    settings = messaging_settings(tmp_path, "http://127.0.0.1:9", sms_provider="twilio")
    app = create_app(settings, TestDatabase(engine, connection))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_a_signed_stop_replayed_after_start_changes_nothing(twilio_client, session, tenant):
    """Twilio's signature has no timestamp: anyone who saw a signed STOP could send
    it again later. Its MessageSid was handled once; a replay opts nobody out."""
    contact = "+15554440004"
    stop = inbound_params(tenant, "STOP", sid="SM" + "a" * 32, contact=contact)
    start = inbound_params(tenant, "START", sid="SM" + "b" * 32, contact=contact)
    for params in (stop, start):
        r = await twilio_client.post(
            SMS, data=params, headers={"X-Twilio-Signature": sign(SMS, params)}
        )
        assert r.status_code == 200, r.text
    settled = await snapshot(session)

    replay = await twilio_client.post(
        SMS, data=stop, headers={"X-Twilio-Signature": sign(SMS, stop)}
    )
    assert replay.status_code == 200
    assert replay.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert await snapshot(session) == settled
    r = await twilio_client.get(
        "/v1/consent", params={"contact_number": contact}, headers=tenant.headers
    )
    (record,) = r.json()["data"]
    assert record["opted_in"] is True


async def test_a_webhook_with_a_number_that_is_not_e164_stores_nothing(
    twilio_client, session, tenant, before
):
    for number in NOT_E164.values():
        params = inbound_params(tenant, "STOP", sid="SM" + "c" * 32, contact=number)
        r = await twilio_client.post(
            SMS, data=params, headers={"X-Twilio-Signature": sign(SMS, params)}
        )
        assert r.status_code in (200, 400), (number, r.text)
    assert await snapshot(session) == before
