"""Cross-site protection of the form's submit.

A double-submit token: the page sets a random value in an HttpOnly,
SameSite=Strict cookie scoped to the consent pages (Secure when the public URL
is https), and puts an HMAC of that value and the form's token id in a hidden
field. Another site can neither read the field nor make the browser send the
cookie with its POST. On top of that, a request that the browser itself labels
cross-site (``Sec-Fetch-Site``) or whose ``Origin`` is another site is refused.

``Origin: null`` is not refused: the page's ``Referrer-Policy: no-referrer``
makes browsers send exactly that with our own form's POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

COOKIE: Final = "am_consent_csrf"
FIELD: Final = "csrf"
_COOKIE_BYTES: Final = 32


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"hosted-form-csrf", hashlib.sha256).digest()


def new_cookie_value() -> str:
    return secrets.token_urlsafe(_COOKIE_BYTES)


def usable_cookie(value: str | None) -> bool:
    """Whether a cookie we find can be kept (else the page sets a fresh one)."""
    return value is not None and len(value) == 43 and value.isascii()


def field_value(secret: bytes, cookie: str, token_id: uuid.UUID) -> str:
    mac = hmac.new(_key(secret), f"{cookie}\x00{token_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def field_matches(
    secret: bytes, cookie: str | None, field: str | None, token_id: uuid.UUID
) -> bool:
    if not usable_cookie(cookie) or not field:
        return False
    assert cookie is not None
    return hmac.compare_digest(field.encode(), field_value(secret, cookie, token_id).encode())


def cross_site(headers: Mapping[str, str], public_base_url: str) -> bool:
    """Whether the browser says the request comes from another site."""
    if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return False
    ours = {urlsplit(public_base_url).netloc.lower(), headers.get("host", "").lower()}
    return urlsplit(origin).netloc.lower() not in ours


def cookie_path(public_base_url: str) -> str:
    """``/consent/`` under the public URL's path: ``https://x.example/sms`` -> ``/sms/consent/``."""
    return urlsplit(public_base_url).path.rstrip("/") + "/consent/"


def cookie_secure(public_base_url: str) -> bool:
    return urlsplit(public_base_url).scheme == "https"
