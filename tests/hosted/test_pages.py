"""The public page GET/POST /consent/{token}: what it shows, what it records, and
every way a link or a submit can fail (SPEC.md "Hosted form")."""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from agentmessage.app import create_app
from agentmessage.db.models import HostedForm, Organization
from agentmessage.hosted import csrf
from agentmessage.hosted.pages import CSRF_FAILED, NOT_AGREED
from agentmessage.hosted.token import sign, verify
from agentmessage.kit.clock import clock
from agentmessage.kit.ids import new_id
from agentmessage.settings import Settings
from tests.conftest import TestDatabase
from tests.fixtures.builders import Tenant, make_record, make_tenant
from tests.hosted.forms import (
    SEED_AGREEMENT,
    b64,
    consents,
    csrf_of,
    history,
    mint,
    open_and_submit,
    page_path,
    unb64,
)

NOW = datetime(2026, 4, 27, 12, 0, tzinfo=UTC)
AGREEMENT_BLOCK = re.compile(r'<div class="agreement" id="agreement">.*?</div>', re.DOTALL)


@pytest.fixture
def frozen():
    with clock.frozen(NOW):
        yield


async def org_name(session, tenant: Tenant) -> str:
    org = await session.get(Organization, tenant.org_id)
    return org.name


def assert_secured(r: httpx.Response) -> None:
    """The headers every hosted page carries, error pages included."""
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    policy = r.headers["content-security-policy"]
    style = re.search(r"<style>(.*?)</style>", r.text, re.DOTALL)
    assert style, r.text
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert policy == (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text.lower()


async def nothing_recorded(client, session, *tenants: Tenant) -> None:
    for tenant in tenants:
        assert await consents(client, tenant) == []
    submitted = select(func.count()).where(HostedForm.submitted_at.is_not(None))
    assert await session.scalar(submitted) == 0


# -- What the page shows ---------------------------------------------------------------------


async def test_the_page_shows_the_business_numbers_and_exact_agreement(client, session, tenant):
    minted = await mint(client, tenant)
    r = await client.get(page_path(minted["token"]))
    assert r.status_code == 200
    assert_secured(r)
    page = r.text
    name = await org_name(session, tenant)
    assert page.startswith('<!doctype html>\n<html lang="en">')
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert f"<title>Text messages from {name}</title>" in page
    assert f"<h1>{name} would like to text you</h1>" in page
    sender = tenant.number.number  # +1555010NNNN
    assert f'<dd class="number">+1 555-010-{sender[-4:]}</dd>' in page
    # The contact's number by its last four digits only.
    assert "<dt>Your number</dt><dd>ending in 3333</dd>" in page
    assert "+15554443333" not in page
    (block,) = AGREEMENT_BLOCK.findall(page)
    assert block == f'<div class="agreement" id="agreement">{html.escape(SEED_AGREEMENT)}</div>'
    checkbox = re.search(r"<input type=\"checkbox\"[^>]*>", page).group(0)
    assert 'id="agree"' in checkbox and "checked" not in checkbox
    assert 'aria-describedby="agreement"' in checkbox
    assert f'<label for="agree">I agree to receive text messages from {name}' in page
    assert '<button type="submit">Submit</button>' in page
    assert '<form method="post">' in page  # posts back to its own URL: no JavaScript


async def test_markup_in_the_agreement_is_shown_as_text(client, tenant):
    text = '<script>alert("x")</script><img src=x onerror=alert(1)> Tom & Jerry\n\nReply STOP.'
    minted = await mint(client, tenant, agreement_text=text)
    r = await client.get(page_path(minted["token"]))
    assert "<script" not in r.text and "<img" not in r.text
    (block,) = AGREEMENT_BLOCK.findall(r.text)
    inner = block.removeprefix('<div class="agreement" id="agreement">').removesuffix("</div>")
    assert "&lt;script&gt;" in inner
    assert html.unescape(inner) == text  # exactly the text, line breaks included


async def test_the_page_sets_a_strict_httponly_cookie_scoped_to_the_consent_pages(client, tenant):
    minted = await mint(client, tenant)
    r = await client.get(page_path(minted["token"]))
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{csrf.COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/consent/" in cookie
    assert "Secure" not in cookie  # the public URL is http here
    # A usable cookie is kept: a second tab's form stays valid.
    again = await client.get(page_path(minted["token"]))
    assert "set-cookie" not in again.headers


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    engine, connection, session, tmp_path
):
    settings = Settings(
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        public_base_url="https://consent.example.com/sms",
    )
    tenant = await make_tenant(session)
    async with client_for(settings, engine, connection) as client:
        minted = await mint(client, tenant)
        r = await client.get(page_path(minted["token"]))
    assert "Secure" in r.headers["set-cookie"]
    assert "Path=/sms/consent/" in r.headers["set-cookie"]


# -- Submitting --------------------------------------------------------------------------------


async def test_a_ticked_submit_opts_in_with_the_evidence(client, tenant, settings, frozen):
    minted = await mint(client, tenant)
    token_id = verify(minted["token"], settings.signing_secret, NOW).token_id
    page = await client.get(page_path(minted["token"]))
    (block,) = AGREEMENT_BLOCK.findall(page.text)
    clock.advance(timedelta(minutes=5))
    r = await client.post(
        page_path(minted["token"]),
        data={"csrf": csrf_of(page), "agree": "yes"},
        headers={"User-Agent": "Mozilla/5.0 (iPhone; test)"},
    )
    assert r.status_code == 200
    assert_secured(r)
    assert "<h1>Thank you</h1>" in r.text
    assert "may now text your number ending in 3333" in r.text

    (record,) = await consents(client, tenant)
    assert record["contact_number"] == "+15554443333"
    assert record["phone_number_id"] == tenant.phone_number_id
    assert record["opted_in"] is True
    assert record["opted_in_at"] == "2026-04-27T12:05:00Z"
    assert record["consent_method"] == "hosted_form"
    assert record["source"] == "hosted_form"
    (event,) = await history(client, tenant, record["id"])
    assert event["type"] == "opt_in"
    assert event["consent_method"] == "hosted_form"
    assert event["source"] == "hosted_form"
    assert event["reason"] == "hosted_form:submit"
    assert event["occurred_at"] == "2026-04-27T12:05:00Z"
    assert event["actor"] == {
        "type": "contact",
        "contact_number": "+15554443333",
        "token_id": str(token_id),
    }
    assert event["evidence"] == {
        "captured_at": "2026-04-27T12:05:00Z",
        "consent_method": "hosted_form",
        "agreement_text": SEED_AGREEMENT,
        "agreement_sha256": hashlib.sha256(SEED_AGREEMENT.encode()).hexdigest(),
        # The agreement exactly as the page embedded it.
        "rendered_agreement_sha256": hashlib.sha256(block.encode()).hexdigest(),
        "form_url": minted["url"],
        "token_id": str(token_id),
        "ip_address": "127.0.0.1",
        "user_agent": "Mozilla/5.0 (iPhone; test)",
    }


async def test_a_second_submit_changes_nothing_and_says_so(client, tenant, frozen):
    minted = await mint(client, tenant)
    first = await open_and_submit(client, minted["token"])
    assert "<h1>Thank you</h1>" in first.text
    clock.advance(timedelta(minutes=1))
    page = await client.get(page_path(minted["token"]))
    assert page.status_code == 200
    assert "<h1>Already recorded</h1>" in page.text
    assert "already recorded on April 27, 2026 at 12:00 UTC. Nothing has changed." in page.text
    assert 'type="checkbox"' not in page.text
    again = await client.post(page_path(minted["token"]), data={"agree": "yes"})
    assert again.status_code == 200
    assert_secured(again)
    assert "<h1>Already recorded</h1>" in again.text
    (record,) = await consents(client, tenant)
    assert record["opted_in_at"] == "2026-04-27T12:00:00Z"
    assert len(await history(client, tenant, record["id"])) == 1


async def test_without_the_box_ticked_the_form_returns_with_an_error(client, session, tenant):
    minted = await mint(client, tenant)
    r = await open_and_submit(client, minted["token"], agree=False)
    assert r.status_code == 422
    assert_secured(r)
    assert (
        f'<div class="alert" role="alert" id="form-error"><p>{html.escape(NOT_AGREED)}</p></div>'
        in r.text
    )
    assert '<div class="check invalid">' in r.text
    assert 'aria-describedby="agreement form-error" aria-invalid="true"' in r.text
    assert "<title>Error: Text messages from" in r.text
    await nothing_recorded(client, session, tenant)
    # The form it returns works.
    fixed = await client.post(page_path(minted["token"]), data={"csrf": csrf_of(r), "agree": "yes"})
    assert "<h1>Thank you</h1>" in fixed.text
    assert len(await consents(client, tenant)) == 1


@pytest.mark.parametrize("agree", ["", "no", "on", "YES"])
async def test_only_the_checkbox_value_counts_as_agreement(client, session, tenant, agree):
    minted = await mint(client, tenant)
    page = await client.get(page_path(minted["token"]))
    r = await client.post(page_path(minted["token"]), data={"csrf": csrf_of(page), "agree": agree})
    assert r.status_code == 422
    await nothing_recorded(client, session, tenant)


async def test_a_contact_who_opted_out_can_opt_in_again_through_the_form(client, session, tenant):
    await make_record(session, tenant, contact_number="+15554443333", opted_in=False)
    minted = await mint(client, tenant)
    r = await open_and_submit(client, minted["token"])
    assert "<h1>Thank you</h1>" in r.text
    (record,) = await consents(client, tenant)
    assert record["opted_in"] is True
    assert record["opted_out_at"] is None
    assert record["consent_method"] == "hosted_form"
    assert [e["type"] for e in await history(client, tenant, record["id"])] == ["opt_out", "opt_in"]


async def test_two_forms_for_one_contact_each_record_their_own_consent(client, tenant):
    first = await mint(client, tenant)
    second = await mint(client, tenant, agreement_text="Weekly offers. Reply STOP to opt out.")
    await open_and_submit(client, first["token"])
    r = await open_and_submit(client, second["token"])
    assert "<h1>Thank you</h1>" in r.text
    (record,) = await consents(client, tenant)
    events = await history(client, tenant, record["id"])
    assert [e["evidence"]["agreement_text"] for e in events] == [
        SEED_AGREEMENT,
        "Weekly offers. Reply STOP to opt out.",
    ]


# -- Cross-site protection ---------------------------------------------------------------------


async def test_a_submit_without_the_cookie_gets_the_form_again_and_records_nothing(
    client, session, tenant
):
    minted = await mint(client, tenant)
    page = await client.get(page_path(minted["token"]))
    client.cookies.clear()
    r = await client.post(page_path(minted["token"]), data={"csrf": csrf_of(page), "agree": "yes"})
    assert r.status_code == 403
    assert_secured(r)
    assert html.escape(CSRF_FAILED) in r.text
    assert 'type="checkbox"' in r.text
    assert "set-cookie" in r.headers  # a fresh cookie, so that the form now works
    await nothing_recorded(client, session, tenant)
    retry = await client.post(page_path(minted["token"]), data={"csrf": csrf_of(r), "agree": "yes"})
    assert "<h1>Thank you</h1>" in retry.text


@pytest.mark.parametrize("field", [None, "", "forged", "A" * 43])
async def test_a_missing_or_wrong_csrf_field_is_403(client, session, tenant, field):
    minted = await mint(client, tenant)
    await client.get(page_path(minted["token"]))
    data = {"agree": "yes"} if field is None else {"agree": "yes", "csrf": field}
    r = await client.post(page_path(minted["token"]), data=data)
    assert r.status_code == 403
    await nothing_recorded(client, session, tenant)


async def test_the_csrf_field_of_one_form_does_not_submit_another(client, session, tenant):
    first = await mint(client, tenant)
    second = await mint(client, tenant, contact_number="+15554443334")
    page = await client.get(page_path(first["token"]))
    await client.get(page_path(second["token"]))
    r = await client.post(page_path(second["token"]), data={"csrf": csrf_of(page), "agree": "yes"})
    assert r.status_code == 403
    await nothing_recorded(client, session, tenant)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:8001"},
    ],
)
async def test_a_cross_site_submit_is_403_even_with_a_valid_cookie(
    client, session, tenant, headers
):
    minted = await mint(client, tenant)
    r = await open_and_submit(client, minted["token"], headers=headers)
    assert r.status_code == 403
    assert html.escape(CSRF_FAILED) in r.text
    await nothing_recorded(client, session, tenant)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"},
        # What browsers send for our own form under Referrer-Policy: no-referrer.
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},
        {"Origin": "http://testserver"},  # the host the request was sent to
        {"Sec-Fetch-Site": "none"},
    ],
)
async def test_a_same_origin_submit_is_accepted(client, tenant, headers):
    minted = await mint(client, tenant)
    r = await open_and_submit(client, minted["token"], headers=headers)
    assert r.status_code == 200
    assert "<h1>Thank you</h1>" in r.text


@pytest.mark.parametrize(
    "send",
    [
        lambda c, path, token: c.post(path, json={"csrf": token, "agree": "yes"}),
        lambda c, path, token: c.post(path, files={"csrf": (None, token), "agree": (None, "yes")}),
        lambda c, path, token: c.post(
            path,
            content=b"csrf=" + token.encode() + b"&agree=yes" + b"&x=1" * 20,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        lambda c, path, token: c.post(
            path,
            content=b"csrf=" + token.encode() + b"&agree=\xff",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
    ],
    ids=["json", "multipart", "too-many-fields", "not-utf8"],
)
async def test_a_body_that_is_not_a_small_urlencoded_form_is_refused(client, session, tenant, send):
    minted = await mint(client, tenant)
    page = await client.get(page_path(minted["token"]))
    r = await send(client, page_path(minted["token"]), csrf_of(page))
    assert r.status_code == 403
    await nothing_recorded(client, session, tenant)


# -- Links that fail -----------------------------------------------------------------------------


@dataclass
class Link:
    token: str
    settings: Settings
    tenant: Tenant
    other: Tenant

    @property
    def claims(self):
        return verify(self.token, self.settings.signing_secret, NOW)

    def resign(self, **changes) -> str:
        return sign(replace(self.claims, **changes), self.settings.signing_secret)

    def parts(self) -> list[str]:
        return self.token.split(".")


def _tampered(link: Link) -> str:
    header, payload, signature = link.parts()
    return f"{header}.{b64({**unb64(payload), 'cn': '+15559990000'})}.{signature}"


def _alg_none(link: Link) -> str:
    _header, payload, _ = link.parts()
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."


def _wrong_signature(link: Link) -> str:
    return sign(link.claims, b"another-secret-0123456789-0123456789")


def _expired(link: Link) -> str:
    clock.advance(timedelta(hours=1))
    return link.token


def _expired_and_tampered(link: Link) -> str:
    clock.advance(timedelta(hours=2))
    return _tampered(link)


FAILURES: dict[str, tuple[Callable[[Link], str], int, str]] = {
    "malformed": (lambda link: "not-a-token", 400, "This link doesn&#39;t work"),
    "truncated": (lambda link: link.token[:-12], 400, "This link doesn&#39;t work"),
    "tampered": (_tampered, 400, "This link doesn&#39;t work"),
    "wrong signature": (_wrong_signature, 400, "This link doesn&#39;t work"),
    "alg none": (_alg_none, 400, "This link doesn&#39;t work"),
    "claims swapped": (
        lambda link: ".".join([*link.parts()[:1], _payload_of_another(link), link.parts()[2]]),
        400,
        "This link doesn&#39;t work",
    ),
    # Signed by us, yet disagreeing with the form it names.
    "other contact": (
        lambda link: link.resign(contact_number="+15559990000"),
        400,
        "This link doesn&#39;t work",
    ),
    "number of another organization": (
        lambda link: link.resign(phone_number_id=link.other.number.id),
        400,
        "This link doesn&#39;t work",
    ),
    "wrong organization": (
        lambda link: link.resign(org=link.other.org_id),
        404,
        "This link is no longer valid",
    ),
    "unknown form": (
        lambda link: link.resign(token_id=new_id()),
        404,
        "This link is no longer valid",
    ),
    "expired": (_expired, 410, "This link has expired"),
    "expired and tampered": (_expired_and_tampered, 400, "This link doesn&#39;t work"),
}


def _payload_of_another(link: Link) -> str:
    return sign(replace(link.claims, token_id=new_id()), link.settings.signing_secret).split(".")[1]


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_bad_link_gets_a_clear_error_page_and_records_nothing(
    client, session, tenant, other_tenant, settings, frozen, case, method
):
    make, status, title = FAILURES[case]
    minted = await mint(client, tenant)
    page = await client.get(page_path(minted["token"]))
    link = Link(minted["token"], settings, tenant, other_tenant)
    token = make(link)
    if method == "GET":
        r = await client.get(page_path(token))
    else:
        r = await client.post(page_path(token), data={"csrf": csrf_of(page), "agree": "yes"})
    assert r.status_code == status, r.text
    assert_secured(r)
    assert f"<title>{title}</title>" in r.text
    assert f"<h1>{title}</h1>" in r.text
    assert "<p>Nothing was recorded.</p>" in r.text
    assert 'type="checkbox"' not in r.text
    await nothing_recorded(client, session, tenant, other_tenant)


async def test_an_expired_link_that_was_submitted_is_still_expired(client, tenant, frozen):
    minted = await mint(client, tenant, expires_in=60)
    await open_and_submit(client, minted["token"])
    clock.advance(timedelta(seconds=60))
    r = await client.get(page_path(minted["token"]))
    assert r.status_code == 410
    assert len(await consents(client, tenant)) == 1


async def test_a_link_expires_after_expires_in(client, tenant, frozen):
    minted = await mint(client, tenant, expires_in=60)
    clock.advance(timedelta(seconds=59))
    assert (await client.get(page_path(minted["token"]))).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert (await client.get(page_path(minted["token"]))).status_code == 410


async def test_other_methods_are_405(client, tenant):
    minted = await mint(client, tenant)
    r = await client.put(page_path(minted["token"]))
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"


# -- Client address ------------------------------------------------------------------------------


def client_for(settings: Settings, engine, connection) -> httpx.AsyncClient:
    app = create_app(settings, TestDatabase(engine, connection))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "recorded"),
    [
        # No trusted proxy (the default): X-Forwarded-For is anyone's to write.
        ("", "203.0.113.9", "127.0.0.1"),
        ("10.0.0.0/8", "203.0.113.9", "127.0.0.1"),
        # Our peer is a trusted proxy: the right-most address it did not add itself.
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "198.51.100.66, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.0/8, 10.0.0.0/8", "203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("127.0.0.1", "2001:db8::7", "2001:db8::7"),
        ("127.0.0.1", "unknown", "127.0.0.1"),
    ],
)
async def test_the_client_ip_honours_x_forwarded_for_only_from_trusted_proxies(
    engine, connection, session, tmp_path, trusted, forwarded_for, recorded
):
    settings = Settings(
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        trusted_proxies=trusted,
    )
    tenant = await make_tenant(session)
    async with client_for(settings, engine, connection) as client:
        minted = await mint(client, tenant)
        await open_and_submit(client, minted["token"], headers={"X-Forwarded-For": forwarded_for})
        (record,) = await consents(client, tenant)
        (event,) = await history(client, tenant, record["id"])
    assert event["evidence"]["ip_address"] == recorded


def test_a_bad_trusted_proxy_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address or CIDR network"):
        Settings(data_dir=tmp_path, trusted_proxies="10.0.0.1, 10.0.0.300")


# -- Logs ----------------------------------------------------------------------------------------


async def test_the_token_never_reaches_the_logs(client, tenant, caplog):
    minted = await mint(client, tenant)
    with caplog.at_level(logging.DEBUG, logger="agentmessage"):
        await open_and_submit(client, minted["token"])
        await client.get(page_path(minted["token"] + "x"))
    # Our own loggers (the test's HTTP client and the database driver log theirs).
    ours = [r for r in caplog.records if r.name.startswith("agentmessage")]
    logged = "\n".join(record.getMessage() for record in ours)
    assert "GET /consent/{token} 200" in logged
    assert "POST /consent/{token} 200" in logged
    signature = minted["token"].split(".")[2]
    assert signature not in logged
