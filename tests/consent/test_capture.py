"""POST /v1/consent: attested capture with evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmessage.kit.clock import clock
from tests.fixtures.builders import capture_body, make_key, make_tenant
from tests.fixtures.edge_values import EDGE_TIMES, FIRST_ACCEPTED_TIMES, INVISIBLE_TEXTS

SEED_PLAN_MESSAGE = (
    "Tier 3 consent capture requires Growth or higher; use double-opt-in "
    "(POST /v1/consent/double-opt-in) or the hosted form (POST /v1/consent/hosted) on Starter"
)


async def test_anonymous_is_401(client, tenant):
    r = await client.post("/v1/consent", json=capture_body(tenant))
    assert r.status_code == 401
    body = r.json()
    assert body["success"] is False
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["error"]["message"] == "authentication failed"
    assert body["error"]["request_id"] == r.headers["x-request-id"]
    assert r.headers["www-authenticate"] == "Bearer"


async def test_key_without_write_scope_is_403(client, session, tenant):
    key = await make_key(session, tenant, ("consent:read",))
    r = await client.post(
        "/v1/consent", json=capture_body(tenant), headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN"
    assert r.json()["error"]["message"] == "missing required scope"


async def test_new_record_is_201_with_the_seed_fields(client, tenant):
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    assert r.status_code == 201
    record = r.json()
    assert set(record) == {
        "id", "org_id", "phone_number_id", "contact_number", "opted_in", "opted_in_at",
        "opted_out_at", "source", "consent_method", "created_at", "updated_at",
    }  # fmt: skip
    assert record["org_id"] == str(tenant.org_id)
    assert record["phone_number_id"] == tenant.phone_number_id
    assert record["contact_number"] == "+15554443333"
    assert record["opted_in"] is True
    assert record["opted_in_at"] == "2026-04-26T12:00:00Z"  # the evidence's captured_at
    assert record["opted_out_at"] is None
    assert record["source"] == "api"
    assert record["consent_method"] == "checkbox"
    assert record["created_at"].endswith("Z") and record["updated_at"].endswith("Z")


async def test_ids_are_uuid_v7(client, tenant):
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    assert r.json()["id"][14] == "7"


async def test_capturing_again_updates_the_record_with_200_and_appends_history(client, tenant):
    first = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    again = await client.post(
        "/v1/consent",
        json=capture_body(
            tenant, opted_in=False, captured_at="2026-04-27T09:30:00Z", consent_method="written"
        ),
        headers=tenant.headers,
    )
    assert again.status_code == 200
    record = again.json()
    assert record["id"] == first.json()["id"]
    assert record["opted_in"] is False
    assert record["opted_in_at"] == "2026-04-26T12:00:00Z"
    assert record["opted_out_at"] == "2026-04-27T09:30:00Z"
    assert record["consent_method"] == "written"
    history = await client.get(f"/v1/consent/{record['id']}/history", headers=tenant.headers)
    assert [e["type"] for e in history.json()["data"]] == ["opt_in", "opt_out"]


async def test_evidence_is_stored_exactly_as_received(client, tenant):
    body = capture_body(tenant, captured_at="2026-04-26T14:00:00+02:00", user_agent="  UA  ")
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.json()["opted_in_at"] == "2026-04-26T12:00:00Z"
    history = await client.get(f"/v1/consent/{r.json()['id']}/history", headers=tenant.headers)
    (event,) = history.json()["data"]
    assert event["evidence"] == body["evidence"]
    assert event["reason"] == "api:capture"
    assert event["source"] == "api"
    assert event["consent_method"] == "checkbox"
    assert event["actor"] == {"type": "api_key", "id": str(tenant.key_id)}
    assert event["occurred_at"] == "2026-04-26T12:00:00Z"


async def test_an_opt_in_older_than_the_opt_out_cannot_restore_consent(client, tenant):
    out = capture_body(tenant, opted_in=False, captured_at="2026-05-01T00:00:00Z")
    await client.post("/v1/consent", json=out, headers=tenant.headers)
    stale = capture_body(tenant, captured_at="2026-04-30T00:00:00Z")
    r = await client.post("/v1/consent", json=stale, headers=tenant.headers)
    assert r.status_code == 422
    assert "before the contact opted out" in r.json()["error"]["details"]["evidence.captured_at"]
    fresh = capture_body(tenant, captured_at="2026-05-02T00:00:00Z")
    r = await client.post("/v1/consent", json=fresh, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["opted_in"] is True
    assert r.json()["opted_out_at"] is None


async def test_an_opt_out_older_than_the_opt_in_cannot_end_it(client, tenant):
    given = capture_body(tenant, captured_at="2026-05-01T00:00:00Z")
    first = await client.post("/v1/consent", json=given, headers=tenant.headers)
    stale = capture_body(
        tenant, opted_in=False, captured_at="2026-04-30T00:00:00Z", consent_method="written"
    )
    r = await client.post("/v1/consent", json=stale, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {
        "evidence.captured_at": "is before the contact opted in at 2026-05-01T00:00:00Z; "
        "an opt-out dated before that consent cannot end it"
    }
    record = await client.get(f"/v1/consent/{first.json()['id']}", headers=tenant.headers)
    assert record.json() == first.json()
    history = await client.get(f"/v1/consent/{first.json()['id']}/history", headers=tenant.headers)
    assert [e["type"] for e in history.json()["data"]] == ["opt_in"]
    # The same moment as the opt-in, or later, ends it.
    out = capture_body(tenant, opted_in=False, captured_at="2026-05-01T00:00:00Z")
    r = await client.post("/v1/consent", json=out, headers=tenant.headers)
    assert r.status_code == 200
    assert (r.json()["opted_in_at"], r.json()["opted_out_at"]) == (
        "2026-05-01T00:00:00Z",
        "2026-05-01T00:00:00Z",
    )


@pytest.mark.parametrize(("captured_at", "reason"), EDGE_TIMES)
async def test_a_time_out_of_range_or_before_1992_is_422_naming_it_and_changes_nothing(
    client, tenant, captured_at, reason
):
    body = capture_body(tenant, captured_at=captured_at)
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert error["details"] == {"evidence.captured_at": reason}
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["meta"]["total"] == 0


@pytest.mark.parametrize("captured_at", FIRST_ACCEPTED_TIMES)
async def test_the_first_moment_of_1992_is_accepted(client, tenant, captured_at):
    body = capture_body(tenant, captured_at=captured_at)
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["opted_in_at"] == "1992-01-01T00:00:00Z"


@pytest.mark.parametrize("text", INVISIBLE_TEXTS)
async def test_an_agreement_text_with_nothing_visible_is_blank(client, tenant, text):
    body = capture_body(tenant, agreement_text=text)
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"] == {"evidence.agreement_text": "must not be blank"}
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["meta"]["total"] == 0


async def test_invisible_characters_around_visible_text_are_kept_as_received(client, tenant):
    body = capture_body(tenant, agreement_text="\u200bReply STOP to opt out.\u3164\u2800")
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    history = await client.get(f"/v1/consent/{r.json()['id']}/history", headers=tenant.headers)
    assert history.json()["data"][0]["evidence"]["agreement_text"] == (
        "\u200bReply STOP to opt out.\u3164\u2800"
    )


def _without(body, *path):
    target = body
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda b: b.update(contact_number="5554443333"), "contact_number", "must be E.164"),
        (lambda b: b.update(contact_number="+1 555 444 3333"), "contact_number", "must be E.164"),
        (lambda b: b.update(contact_number="+1555"), "contact_number", "must be E.164"),
        (lambda b: b.update(contact_number="+1234567890123456"), "contact_number", "must be E.164"),
        (lambda b: b.update(contact_number=15554443333), "contact_number", "must be a string"),
        (lambda b: b.update(phone_number_id="abc"), "phone_number_id", "must be a UUID"),
        (lambda b: b.update(opted_in="yes"), "opted_in", "must be true or false"),
        (lambda b: _without(b, "opted_in"), "opted_in", "is required"),
        (lambda b: _without(b, "evidence"), "evidence", "is required"),
        (lambda b: b.update(extra=1), "extra", "is not a known field"),
        (
            lambda b: b["evidence"].update(ip_address=""),
            "evidence.ip_address",
            "must be a valid IP address",
        ),
        (
            lambda b: b["evidence"].update(ip_address="999.1.1.1"),
            "evidence.ip_address",
            "must be a valid IP address",
        ),
        (
            lambda b: b["evidence"].update(captured_at="2026-04-26 noon"),
            "evidence.captured_at",
            "must be an RFC 3339 date-time such as 2026-04-26T12:00:00Z",
        ),
        (
            lambda b: b["evidence"].update(captured_at="2026-04-26T12:00:00"),
            "evidence.captured_at",
            "must be an RFC 3339 date-time such as 2026-04-26T12:00:00Z",
        ),
        (
            lambda b: _without(b, "evidence", "captured_at"),
            "evidence.captured_at",
            "is required",
        ),
        (
            lambda b: b["evidence"].update(agreement_text=""),
            "evidence.agreement_text",
            "must be at least 1 character",
        ),
        (
            lambda b: b["evidence"].update(agreement_text="   "),
            "evidence.agreement_text",
            "must not be blank",
        ),
        (
            lambda b: b["evidence"].update(agreement_text="x" * 4001),
            "evidence.agreement_text",
            "must be at most 4000 characters",
        ),
        (
            lambda b: b["evidence"].update(user_agent="u" * 1025),
            "evidence.user_agent",
            "must be at most 1024 characters",
        ),
        (
            lambda b: b["evidence"].update(form_url="ftp://example.com/x"),
            "evidence.form_url",
            "must be an http or https URL",
        ),
        (
            lambda b: b["evidence"].update(form_url="not a url"),
            "evidence.form_url",
            "must be an http or https URL",
        ),
        (
            lambda b: b["evidence"].update(consent_method="telepathy"),
            "evidence.consent_method",
            "must be one of 'checkbox', 'sms_keyword', 'written', 'verbal', 'attested', "
            "'double_opt_in' or 'hosted_form'",
        ),
        (
            lambda b: b["evidence"].update(consent_method="double_opt_in"),
            "evidence.consent_method",
            "double_opt_in is recorded only by this service's own flow; "
            "use POST /v1/consent/double-opt-in",
        ),
        (
            lambda b: b["evidence"].update(consent_method="hosted_form"),
            "evidence.consent_method",
            "hosted_form is recorded only by this service's own flow; use POST /v1/consent/hosted",
        ),
        (lambda b: b["evidence"].update(color="red"), "evidence.color", "is not a known field"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field_and_change_nothing(
    client, tenant, change, field, reason
):
    body = capture_body(tenant)
    change(body)
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert error["message"] == "validation failed"
    assert error["details"][field] == reason
    listed = await client.get("/v1/consent", headers=tenant.headers)
    assert listed.json()["meta"]["total"] == 0


async def test_captured_at_more_than_five_minutes_ahead_is_422(client, tenant):
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with clock.frozen(now):
        soon = capture_body(tenant, captured_at="2026-06-01T12:04:59Z")
        assert (
            await client.post("/v1/consent", json=soon, headers=tenant.headers)
        ).status_code == 201
        late = capture_body(tenant, "+15554443334", captured_at="2026-06-01T12:05:01Z")
        r = await client.post("/v1/consent", json=late, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["details"] == {
        "evidence.captured_at": "must not be more than 5 minutes in the future"
    }


async def test_fictional_555_numbers_pass_and_other_countries_too(client, tenant):
    for number in ("+15554443333", "+442071838750", "+4915123456789"):
        r = await client.post(
            "/v1/consent", json=capture_body(tenant, number), headers=tenant.headers
        )
        assert r.status_code == 201, (number, r.text)


async def test_body_that_is_not_json_is_400(client, tenant):
    r = await client.post(
        "/v1/consent",
        content=b'{"phone_number_id": ',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"
    assert r.json()["error"]["details"] == {"body": "must be valid JSON"}


async def test_body_that_is_not_an_object_is_422(client, tenant):
    r = await client.post("/v1/consent", json=[1, 2], headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_body_over_one_mebibyte_is_413(client, tenant):
    body = capture_body(tenant)
    body["evidence"]["agreement_text"] = "x" * (1024 * 1024)
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


async def test_unknown_phone_number_is_404(client, tenant):
    body = capture_body(tenant)
    body["phone_number_id"] = "7c1f0a2d-9e8b-4c3a-9d2e-1f0a2b3c4d5e"
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_another_organizations_phone_number_is_404(client, tenant, other_tenant):
    r = await client.post("/v1/consent", json=capture_body(other_tenant), headers=tenant.headers)
    assert r.status_code == 404
    listed = await client.get("/v1/consent", headers=other_tenant.headers)
    assert listed.json()["meta"]["total"] == 0


@pytest.mark.parametrize(
    ("plan", "allowed"),
    [
        ("payg", True),
        ("growth", True),
        ("scale", True),
        ("enterprise", True),
        ("starter", False),
        ("legacy_basic", False),
        ("legacy_pro", False),
    ],
)
async def test_plan_gate_on_opt_in_capture(client, session, plan, allowed):
    tenant = await make_tenant(session, plan=plan)
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    if allowed:
        assert r.status_code == 201
    else:
        assert r.status_code == 403
        assert r.json()["error"] == {
            "code": "PLAN_REQUIRED",
            "message": SEED_PLAN_MESSAGE,
            "request_id": r.headers["x-request-id"],
        }
    # Recording an opt-out is never plan-gated.
    out = capture_body(tenant, "+15554443339", opted_in=False)
    assert (await client.post("/v1/consent", json=out, headers=tenant.headers)).status_code == 201


async def test_timestamps_keep_their_instant_whatever_the_offset(client, tenant):
    body = capture_body(tenant, captured_at="2026-04-26T07:00:00.5-05:00")
    r = await client.post("/v1/consent", json=body, headers=tenant.headers)
    assert r.json()["opted_in_at"] == "2026-04-26T12:00:00.500000Z"


async def test_updated_at_moves_on_each_change(client, tenant):
    start = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    with clock.frozen(start):
        first = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
        clock.advance(timedelta(minutes=3))
        second = await client.post(
            "/v1/consent", json=capture_body(tenant, opted_in=False), headers=tenant.headers
        )
    assert first.json()["updated_at"] == "2026-07-01T08:00:00Z"
    assert second.json()["created_at"] == "2026-07-01T08:00:00Z"
    assert second.json()["updated_at"] == "2026-07-01T08:03:00Z"


def test_the_north_american_shortcut_agrees_with_libphonenumber():
    import random

    import phonenumbers

    from agentmessage.kit.phone import e164_problem

    rng = random.Random(5)
    for _ in range(5000):
        number = "+1" + "".join(rng.choice("0123456789") for _ in range(10))
        assert e164_problem(number) is None
        assert phonenumbers.is_possible_number(phonenumbers.parse(number, None))
