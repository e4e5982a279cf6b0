"""Secrets and privacy (issue 7, item 6): API keys kept only as hashes and compared in
constant time; no log line carries a key, a bearer token, a hosted-form token or a
contact's full number.

Held elsewhere: the hosted page's Content-Security-Policy (no script at all,
``default-src 'none'``), ``X-Frame-Options: DENY`` with ``frame-ancestors 'none'``
and ``Referrer-Policy: no-referrer``, on the form, the thank-you page and every
error page: tests/hosted/test_pages.py::assert_secured.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agentmessage.auth import service as auth_service
from agentmessage.auth.keys import generate_key
from agentmessage.consent import service as consent_service
from agentmessage.db.base import Base
from agentmessage.hosted import csrf
from agentmessage.kit import cursor
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from tests.conftest import TestDatabase
from tests.fixtures.builders import capture_body, make_key
from tests.hosted.forms import mint, open_and_submit, page_path

# -- Keys at rest ------------------------------------------------------------------------------


def every_value(rows: list[Any]) -> str:
    """Each column of each row as text (bytes read as Latin-1, so nothing is lost)."""
    cells = []
    for row in rows:
        for value in row:
            cells.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return "\n".join(cells)


async def test_an_api_key_is_stored_only_as_its_hash(client, session, tenant):
    second = await make_key(session, tenant, ("consent:read",))
    # Used once, so every table a request may write has had its chance to keep it.
    r = await client.post(
        "/v1/consent",
        json=capture_body(tenant),
        headers={**tenant.headers, "Idempotency-Key": "k-1"},
    )
    assert r.status_code == 201
    assert (
        await client.get("/v1/consent", headers={"Authorization": f"Bearer {second}"})
    ).is_success

    stored = []
    for table in Base.metadata.tables.values():
        stored.append(every_value(list(await session.execute(select(table)))))
    everything = "\n".join(stored)
    for plain in (tenant.key, second):
        body = plain.removeprefix("am_live_")
        assert plain not in everything
        assert body not in everything
        assert hashlib.sha256(plain.encode()).hexdigest() in everything  # what is kept


def test_keys_and_other_secrets_are_compared_in_constant_time():
    """Source-level: the comparisons of secrets go through hmac.compare_digest."""
    for function, compared in (
        (auth_service.caller_of, 'hmac.compare_digest(row["key_hash"], digest)'),
        (csrf, "hmac.compare_digest("),
        (cursor, "hmac.compare_digest(mac,"),
    ):
        source = inspect.getsource(function)
        assert compared in source, function
    # Never a plain == on a key's hash anywhere in the auth package.
    auth_source = inspect.getsource(auth_service)
    assert not re.search(r"key_hash\s*[!=]=\s*(digest|hash_key)", auth_source)


# -- Logs across a representative flow ---------------------------------------------------------

# The test's own HTTP client logs the URLs it calls: that is the caller's side, not ours.
CLIENT_LOGGERS = ("httpx", "httpcore")


def logged_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(record) for record in records if not record.name.startswith(CLIENT_LOGGERS)
    )


async def test_no_log_line_carries_a_key_a_token_or_a_full_number(
    engine, connection, client, session, tenant, settings, caplog, monkeypatch
):
    contacts = {
        "capture": "+15554441001",
        "bulk": "+15554441002",
        "bulk2": "+442071838750",
        "double opt-in": "+15554441003",
        "stop": "+15554441004",
        "hosted": "+15554441005",
        "failing": "+15554441006",
    }
    unknown_key = generate_key()
    headers = tenant.headers
    caplog.set_level(logging.DEBUG)  # the root logger: every logger that does not opt out

    async def ok(r: httpx.Response, status: int = 200) -> Any:
        assert r.status_code == status, r.text
        return r.json()

    # Capture, bulk, list (with the number in the query), read, history.
    record = await ok(
        await client.post(
            "/v1/consent", json=capture_body(tenant, contacts["capture"]), headers=headers
        ),
        201,
    )
    bulk = {
        "records": [capture_body(tenant, contacts["bulk"]), capture_body(tenant, contacts["bulk2"])]
    }
    await ok(await client.post("/v1/consent/bulk", json=bulk, headers=headers))
    await ok(
        await client.get(
            "/v1/consent", params={"contact_number": contacts["capture"]}, headers=headers
        )
    )
    await ok(await client.get(f"/v1/consent/{record['id']}/history", headers=headers))

    # Double opt-in, the contact's YES; a STOP, then HELP from the opted-out contact.
    challenge = {
        "phone_number_id": tenant.phone_number_id,
        "contact_number": contacts["double opt-in"],
        "agreement_text": "Reminders from us. Reply STOP to opt out.",
    }
    await ok(await client.post("/v1/consent/double-opt-in", json=challenge, headers=headers), 202)
    for contact, body in (
        (contacts["double opt-in"], "YES"),
        (contacts["stop"], "STOP"),
        (contacts["stop"], "HELP"),
    ):
        sms = {"from": contact, "to": tenant.number.number, "body": body}
        await ok(await client.post("/v1/sandbox/inbound", json=sms, headers=headers), 201)
    dispatcher = Dispatcher.from_settings(TestDatabase(engine, connection), settings)
    try:
        await dispatcher.run_once()  # the sandbox sends what was queued
    finally:
        await dispatcher.provider.aclose()

    # The hosted form: minted, opened, submitted; and a broken link.
    minted = await mint(client, tenant, contact_number=contacts["hosted"])
    await open_and_submit(client, minted["token"])
    assert (await client.get(page_path(minted["token"] + "x"))).status_code == 400

    # Errors: 401 with an unknown key, 422 naming a number, 404, and a 500.
    r = await client.get("/v1/consent", headers={"Authorization": f"Bearer {unknown_key}"})
    assert r.status_code == 401
    bad = capture_body(tenant, contacts["capture"], ip_address="not-an-ip")
    assert (await client.post("/v1/consent", json=bad, headers=headers)).status_code == 422
    assert (await client.get(f"/v1/consent/{uuid.uuid4()}", headers=headers)).status_code == 404

    async def explode(*args: Any, **kwargs: Any) -> None:
        # What a database error's message can hold: the number and the key.
        raise RuntimeError(f"INSERT ... VALUES ('{contacts['failing']}', '{tenant.key}')")

    monkeypatch.setattr(consent_service, "capture", explode)
    failing = capture_body(tenant, contacts["failing"])
    assert (await client.post("/v1/consent", json=failing, headers=headers)).status_code == 500

    logged = logged_text(caplog.records)
    assert "POST /v1/consent 500" in logged  # the access log saw it all
    assert "GET /consent/{token} 200" in logged
    secrets = {
        "api key": tenant.key,
        "api key body": tenant.key.removeprefix("am_live_"),
        "unknown bearer token": unknown_key,
        "hosted-form token": minted["token"],
        "hosted-form token signature": minted["token"].split(".")[2],
        "hosted-form token payload": minted["token"].split(".")[1],
    }
    for name, contact in contacts.items():
        digits = contact.removeprefix("+")
        secrets[f"number ({name})"] = digits
        secrets[f"national number ({name})"] = digits[-10:]
    leaked = {name: value for name, value in secrets.items() if value in logged}
    assert leaked == {}, logged
    # Where a number is logged it is masked to its last four digits.
    assert "+*******1004" in logged, logged


@pytest.mark.parametrize("number", ["+15554443333", "+442071838750", "+861234567890123"])
def test_masking_keeps_only_the_last_four_digits(number):
    from agentmessage.kit.phone import masked

    digits = number.removeprefix("+")
    shown = masked(number)
    assert shown == "+" + "*" * (len(digits) - 4) + digits[-4:]
