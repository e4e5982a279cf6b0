"""End to end in a real headless Chromium (Debian's, driven by Playwright): a contact
opens the link, ticks, submits, and the record is there.

The app runs under uvicorn on a loopback port, on a database of its own per
backend, with real commits. Screenshots land in tests/artifacts/. Chromium comes
from `make system-deps` (apt-get install chromium); Playwright never downloads a
browser. Without it the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from agentmessage.app import create_app
from agentmessage.auth.service import create_key
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.hosted.pages import CSRF_FAILED, NOT_AGREED
from agentmessage.kit.clock import clock, utcnow
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.settings import Settings
from tests.fixtures.later import without_faketime
from tests.hosted.forms import SEED_AGREEMENT

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
LABEL = "I agree to receive text messages from Sunrise Dental as described above."

# WCAG 2 contrast of each text against the background it is drawn on.
CONTRAST_JS = """
(selectors) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  return selectors.map((s) => {
    const el = document.querySelector(s);
    if (!el) return [s, 0];
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            # Chromium's timers spin under libfaketime (a page took minutes); the
            # browser only renders, the clocks `make test-later` moves are the
            # server's and the database's.
            executable_path=chromium,
            args=LAUNCH_ARGS,
            env=without_faketime(),
        )
        yield browser
        await browser.close()


@dataclass
class Live:
    """The app served on a loopback port, its database, and one organization's key."""

    base_url: str
    database: Database
    key: str
    phone_number_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def mint(self, contact_number: str, **fields: Any) -> dict[str, Any]:
        body = {
            "phone_number_id": self.phone_number_id,
            "contact_number": contact_number,
            "agreement_text": SEED_AGREEMENT,
            **fields,
        }
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            r = await client.post("/v1/consent/hosted", json=body, headers=self.headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def records(self, contact_number: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            r = await client.get(
                "/v1/consent", params={"contact_number": contact_number}, headers=self.headers
            )
            records = list(r.json()["data"])
            for record in records:
                h = await client.get(f"/v1/consent/{record['id']}/history", headers=self.headers)
                record["history"] = h.json()["data"]
        return records


@pytest.fixture(scope="module")
async def live(engine, database_url_factory, tmp_path_factory) -> AsyncIterator[Live]:
    """One server per backend (``engine``'s parameter picks it), on a fresh database."""
    url = database_url_factory(engine.dialect.name)
    database = Database(create_engine(url))
    await upgrade_to_head(database.engine)
    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Sunrise Dental", plan="starter")
        number = await create_phone_number(session, org_id=org.id, number="+15550100001")
        key = await create_key(session, org_id=org.id, scopes=["consent:read", "consent:write"])
        await session.commit()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("live"),
        secret_key="browser-test-secret-0123456789",  # type: ignore[arg-type]
        public_base_url=base_url,
    )
    app = create_app(settings, Database(create_engine(url)))
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Live(base_url, database, key.plain, str(number.id))
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        sock.close()
        await database.dispose()


async def new_page(browser: Browser, **context: Any) -> tuple[Page, list[str]]:
    """A page in a fresh context, and the console errors it logs (a CSP violation
    is one; the note Chromium logs for a 4xx page is not)."""
    ctx = await browser.new_context(**context)
    page = await ctx.new_page()
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name))


async def test_a_contact_opens_the_link_on_a_phone_ticks_and_submits(live, browser):
    minted = await live.mint("+15554443333")
    page, errors = await new_page(browser, **PHONE, user_agent=PHONE_UA)
    response = await page.goto(minted["url"])
    assert response is not None and response.status == 200
    assert await page.title() == "Text messages from Sunrise Dental"
    assert await page.evaluate("document.documentElement.lang") == "en"
    heading = page.get_by_role("heading", level=1)
    assert await heading.inner_text() == "Sunrise Dental would like to text you"
    assert await page.get_by_text("+1 555-010-0001").is_visible()
    assert await page.get_by_text("ending in 3333").is_visible()
    assert await page.locator("#agreement").inner_text() == SEED_AGREEMENT
    checkbox = page.get_by_label(LABEL)
    assert await checkbox.get_attribute("type") == "checkbox"
    assert not await checkbox.is_checked()
    submit = page.get_by_role("button", name="Submit")

    # Fits the phone: no sideways scrolling, the whole form on the first screen,
    # and a thumb-sized button.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    box = await submit.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844 and box["height"] >= 44
    assert box["width"] >= 300
    # The stylesheet applied (its CSP hash matched) and nothing was refused.
    background = await submit.evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == "rgb(29, 78, 216)"
    contrast = await page.evaluate(
        CONTRAST_JS, ["h1", ".eyebrow", "dt", "dd", "#agreement", "label", "button", ".fine"]
    )
    assert all(ratio >= 4.5 for _, ratio in contrast), contrast
    await screenshot(page, "hosted-form-390x844.png")

    await page.get_by_text(LABEL).tap()  # the label ticks its checkbox
    assert await checkbox.is_checked()
    await submit.tap()
    await page.get_by_role("heading", name="Thank you").wait_for()
    assert "may now text your number ending in 3333 from +1 555-010-0001" in (
        await page.locator("main").inner_text()
    )
    await screenshot(page, "hosted-form-thank-you-390x844.png")
    assert errors == []

    (record,) = await live.records("+15554443333")
    assert record["opted_in"] is True
    assert record["consent_method"] == "hosted_form"
    assert record["source"] == "hosted_form"
    (event,) = record["history"]
    evidence = event["evidence"]
    assert evidence["user_agent"] == PHONE_UA
    assert evidence["ip_address"] == "127.0.0.1"
    assert evidence["form_url"] == minted["url"]
    assert evidence["agreement_text"] == SEED_AGREEMENT

    # Back and submit again: nothing changes, and the page says so.
    await page.goto(minted["url"])
    await page.get_by_role("heading", name="Already recorded").wait_for()
    assert len((await live.records("+15554443333"))[0]["history"]) == 1
    await page.context.close()


async def test_on_a_desktop_the_form_works_by_keyboard_alone(live, browser):
    minted = await live.mint("+15554443334")
    page, errors = await new_page(browser, **DESKTOP)
    await page.goto(minted["url"])
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1280
    await screenshot(page, "hosted-form-1280x800.png")

    # Focus order: the checkbox first, then the button; focus is visible.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "agree"
    outline = await page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); "
        "return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert outline == ["solid", "3px"]
    await page.keyboard.press("Space")
    assert await page.get_by_label(LABEL).is_checked()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Submit"
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Thank you").wait_for()
    assert errors == []
    assert len(await live.records("+15554443334")) == 1
    await page.context.close()


async def test_submitting_without_ticking_shows_the_error_and_records_nothing(live, browser):
    minted = await live.mint("+15554443335")
    page, _ = await new_page(browser, **PHONE)
    await page.goto(minted["url"])
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="Submit").tap()
    response = await navigation.value
    assert response is not None and response.status == 422
    alert = page.get_by_role("alert")
    assert await alert.inner_text() == NOT_AGREED
    checkbox = page.get_by_label(LABEL)
    assert await checkbox.get_attribute("aria-invalid") == "true"
    contrast = await page.evaluate(CONTRAST_JS, [".alert p", "label"])
    assert all(ratio >= 4.5 for _, ratio in contrast), contrast
    await screenshot(page, "hosted-form-not-ticked-390x844.png")
    assert await live.records("+15554443335") == []
    await checkbox.tap()
    await page.get_by_role("button", name="Submit").tap()
    await page.get_by_role("heading", name="Thank you").wait_for()
    await page.context.close()


async def test_script_in_the_agreement_is_shown_as_text(live, browser):
    text = (
        "<script>window.__pwned = true</script>"
        '<img src=x onerror="window.__pwned = true"><b>Bold?</b> Reply STOP to opt out.'
    )
    minted = await live.mint("+15554443336", agreement_text=text)
    page, errors = await new_page(browser, **PHONE)
    await page.goto(minted["url"])
    assert await page.locator("#agreement").inner_text() == text
    assert await page.locator("script, img, #agreement b").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await page.get_by_label(LABEL).check()
    await page.get_by_role("button", name="Submit").click()
    await page.get_by_role("heading", name="Thank you").wait_for()
    assert await page.evaluate("window.__pwned") is None
    assert errors == []
    (record,) = await live.records("+15554443336")
    assert record["history"][0]["evidence"]["agreement_text"] == text
    await page.context.close()


async def test_a_form_posted_from_another_site_records_nothing(live, browser):
    minted = await live.mint("+15554443337")
    page, _ = await new_page(browser, **PHONE)
    await page.goto(minted["url"])
    field = await page.locator("input[name=csrf]").get_attribute("value")
    # An attacker's page (served by Playwright itself, never fetched) that even
    # knows the hidden field: the browser labels its POST cross-site and leaves the
    # SameSite=Strict cookie behind.
    attacker = (
        f'<form method="post" action="{minted["url"]}">'
        f'<input name="csrf" value="{field}"><input name="agree" value="yes">'
        "<button>go</button></form>"
    )
    await page.route(
        "http://attacker.test/",
        lambda route: route.fulfill(body=attacker, content_type="text/html"),
    )
    await page.goto("http://attacker.test/")
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name="go").click()
    response = await navigation.value
    assert response is not None and response.status == 403
    assert await page.get_by_role("alert").inner_text() == CSRF_FAILED
    assert await live.records("+15554443337") == []
    await page.context.close()


async def test_an_expired_link_shows_a_clear_page(live, browser):
    minted = await live.mint("+15554443338", expires_in=60)
    page, errors = await new_page(browser, **PHONE)
    with clock.frozen(utcnow() + timedelta(seconds=61)):
        response = await page.goto(minted["url"])
    assert response is not None and response.status == 410
    assert await page.get_by_role("heading", level=1).inner_text() == "This link has expired"
    assert await page.get_by_text("Nothing was recorded.").is_visible()
    await screenshot(page, "hosted-form-expired-390x844.png")
    assert errors == []
    await page.context.close()
