"""The hosted form's HTML: Jinja2 templates (autoescaped), one stylesheet, the headers.

The stylesheet is embedded in a ``<style>`` element and allowed by its SHA-256
in the Content-Security-Policy, rather than served from a URL of its own: the
page is one response (a phone on a weak connection waits for one round trip,
not two), there is no asset route to keep, and the policy still allows exactly
that stylesheet and nothing else (``default-src 'none'``; no script at all).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import phonenumbers
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.responses import HTMLResponse

TEMPLATES: Final = Path(__file__).parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

STYLESHEET: Final = (TEMPLATES / "form.css").read_text(encoding="utf-8").strip()
STYLE_HASH: Final = (
    "sha256-" + base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode()
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src '{STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    # The URL holds the token: never send it anywhere as a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}

PROBLEMS: Final = {
    "invalid": (
        "This link doesn't work",
        "The link is incomplete or has been changed. Open it exactly as you received "
        "it, or ask the business that sent it for a new one.",
    ),
    "expired": (
        "This link has expired",
        "Consent links work for a limited time only. Ask the business that sent it for a new link.",
    ),
    "unknown": (
        "This link is no longer valid",
        "Ask the business that sent it for a new link.",
    ),
}


@dataclass(frozen=True, slots=True)
class RenderedAgreement:
    """The agreement exactly as the page embeds it, and the SHA-256 (hex) of those bytes."""

    html: Markup
    sha256: str


def render_agreement(text: str) -> RenderedAgreement:
    """The agreement text as an escaped HTML fragment: text, never markup."""
    html = _env.get_template("_agreement.html").render(text=text)
    # Safe: the autoescaping environment rendered it; the text went in escaped.
    return RenderedAgreement(Markup(html), hashlib.sha256(html.encode()).hexdigest())  # noqa: S704


def human_number(e164: str) -> str:
    """``+15550100001`` -> ``+1 555-010-0001``."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    formatted: str = phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return formatted


def last_four(e164: str) -> str:
    """The contact's number is shown by its last four digits only: the link may be
    forwarded or seen over a shoulder, and its owner recognises the ending."""
    return e164[-4:]


def human_date(at: datetime) -> str:
    at = at.astimezone(UTC)
    return f"{at:%B} {at.day}, {at:%Y} at {at:%H:%M} UTC"


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    # Our own file, embedded verbatim: the CSP hash is of exactly these bytes.
    stylesheet = Markup(STYLESHEET)  # noqa: S704
    html = _env.get_template(template).render(stylesheet=stylesheet, **context)
    return HTMLResponse(html, status_code=status)


def problem_page(kind: str, status: int) -> HTMLResponse:
    title, message = PROBLEMS[kind]
    return page("problem.html", status, title=title, message=message)
