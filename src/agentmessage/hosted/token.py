"""Hosted-form tokens: HS256 JWTs bound to an organization, a sender number, a
contact and an agreement text.

The key is derived for this one purpose from the server secret, so a token key
is never a cursor key. Verification pins the algorithm (``alg: none`` and
RS256/HS256 confusion fail), requires every claim, and judges ``exp`` against
our own clock (``kit.clock``), not PyJWT's, so that tests move time instead of
sleeping. The agreement text itself lives in the database (``hosted_forms``,
keyed by the token id) and the token carries its SHA-256: the URL stays short
whatever the text, and the text shown is provably the one signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

import jwt

from agentmessage.auth.service import OrgScope
from agentmessage.kit.phone import e164_problem

ALGORITHM: Final = "HS256"
ISSUER: Final = "agentmessage"
AUDIENCE: Final = "agentmessage:hosted-form"
REQUIRED_CLAIMS: Final = ("iss", "aud", "org", "pn", "cn", "ath", "jti", "iat", "exp")
MAX_LIFETIME: Final = timedelta(seconds=86400)
# A token is ~500 characters; anything far longer is not one of ours.
MAX_TOKEN_LENGTH: Final = 2048


class HostedFormError(Exception):
    """A link that cannot show or take a form. Rendered as an HTML page, never JSON.

    ``kind`` is explicit (it picks the page's wording), never derived from the
    class name.
    """

    status: ClassVar[int]
    kind: ClassVar[str]


class InvalidLink(HostedFormError):
    """Malformed, tampered with, or not signed by us."""

    status = 400
    kind = "invalid"


class ExpiredLink(HostedFormError):
    status = 410
    kind = "expired"


class UnknownLink(HostedFormError):
    """Well signed, but no such form in its organization (or the number left it)."""

    status = 404
    kind = "unknown"


@dataclass(frozen=True, slots=True)
class FormClaims:
    """What a verified token vouches for."""

    org: OrgScope
    phone_number_id: uuid.UUID
    contact_number: str
    agreement_sha256: str
    token_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime


def token_key(secret: bytes) -> bytes:
    """HMAC-SHA256(server secret, purpose): this key signs hosted-form tokens only."""
    return hmac.new(secret, b"hosted-form-token", hashlib.sha256).digest()


def agreement_digest(text: str) -> str:
    """SHA-256 (hex) of the agreement text's UTF-8 bytes: the ``ath`` claim."""
    return hashlib.sha256(text.encode()).hexdigest()


def _ath(hex_digest: str) -> str:
    # base64url in the token (43 characters instead of 64 of hex).
    return base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).rstrip(b"=").decode()


def sign(claims: FormClaims, secret: bytes) -> str:
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "org": str(claims.org),
        "pn": str(claims.phone_number_id),
        "cn": claims.contact_number,
        "ath": _ath(claims.agreement_sha256),
        "jti": str(claims.token_id),
        "iat": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
    }
    return jwt.encode(payload, token_key(secret), algorithm=ALGORITHM)


def verify(token: str, secret: bytes, now: datetime) -> FormClaims:
    """The claims of a token we signed. InvalidLink when malformed, tampered with,
    signed otherwise or missing a claim; ExpiredLink once ``now`` reaches ``exp``.

    The signature is checked before the expiry: an altered expired token is 400.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink
    try:
        payload = jwt.decode(
            token,
            token_key(secret),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=AUDIENCE,
            options={
                "require": list(REQUIRED_CLAIMS),
                # Judged below against kit.clock; PyJWT would use the real time.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
        claims = _claims(payload)
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
        raise InvalidLink from None
    if now >= claims.expires_at:
        raise ExpiredLink
    return claims


def _claims(payload: dict[str, Any]) -> FormClaims:
    iat, exp = payload["iat"], payload["exp"]
    if not all(type(value) is int for value in (iat, exp)):
        raise TypeError("iat and exp must be integers")
    issued_at = datetime.fromtimestamp(iat, UTC)
    expires_at = datetime.fromtimestamp(exp, UTC)
    if not issued_at < expires_at <= issued_at + MAX_LIFETIME:
        raise ValueError("lifetime out of range")
    contact = payload["cn"]
    if not isinstance(contact, str) or e164_problem(contact):
        raise ValueError("cn must be E.164")
    ath = payload["ath"]
    if not isinstance(ath, str) or len(ath) != 43:
        raise ValueError("ath must be a base64url SHA-256")
    digest = base64.urlsafe_b64decode(ath + "=")
    if len(digest) != 32:
        raise ValueError("ath must be a base64url SHA-256")
    return FormClaims(
        # A verified token vouches for its organization as an API key does.
        org=OrgScope(uuid.UUID(str(payload["org"]))),
        phone_number_id=uuid.UUID(str(payload["pn"])),
        contact_number=contact,
        agreement_sha256=digest.hex(),
        token_id=uuid.UUID(str(payload["jti"])),
        issued_at=issued_at,
        expires_at=expires_at,
    )
