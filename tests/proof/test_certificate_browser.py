"""The printable consent certificate in a real headless Chromium: rendered,
screenshotted (tests/artifacts/) and printed to PDF."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser
from tests.hosted.test_browser import ARTIFACTS, browser, chromium  # noqa: F401 (fixtures)
from tests.proof.test_tamper import SIGNER, packet_of, seed

from agentmessage.db.engine import Database
from agentmessage.proof import certificate


async def test_certificate_prints_on_one_page_and_says_verified(
    database: Database,
    browser: Browser,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    world = await seed(database)
    html = certificate.render(await packet_of(world, "alice"), SIGNER.public)
    page = await browser.new_page(viewport={"width": 900, "height": 1200})
    try:
        await page.set_content(html)
        verdict = await page.text_content("#verdict")
        assert verdict is not None and verdict.startswith("Verified: all")
        rows = await page.locator("tbody tr").count()
        assert rows == 3  # alice's three events
        assert "+15554440001" in (await page.text_content("body") or "")
        backend = database.engine.dialect.name
        await page.screenshot(path=ARTIFACTS / f"proof-certificate-{backend}.png", full_page=True)
        pdf = await page.pdf(format="A4", print_background=True)
    finally:
        await page.close()
    assert pdf.startswith(b"%PDF-")
    (tmp_path / "certificate.pdf").write_bytes(pdf)
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1  # one printed page
