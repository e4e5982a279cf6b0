"""Hosted-form tokens: HS256 pinned, every claim required, expiry on our clock."""

from __future__ import annotations

import hashlib
import hmac
import uuid
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from agentmessage.auth.service import OrgScope
from agentmessage.hosted.token import (
    ExpiredLink,
    FormClaims,
    InvalidLink,
    agreement_digest,
    sign,
    token_key,
    verify,
)
from agentmessage.kit.ids import new_id
from agentmessage.settings import Settings
from tests.hosted.forms import b64, unb64

SECRET = b"test-secret-key-0123456789-0123456789"
NOW = datetime(2026, 4, 27, 12, 0, tzinfo=UTC)


def claims(**changes: object) -> FormClaims:
    base = FormClaims(
        org=OrgScope(new_id()),
        phone_number_id=new_id(),
        contact_number="+15554443333",
        agreement_sha256=agreement_digest("Reply STOP to opt out."),
        token_id=new_id(),
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def payload_of(token: str) -> dict[str, object]:
    return unb64(token.split(".")[1])


def resigned(
    payload: dict[str, object], *, key: bytes = token_key(SECRET), **headers: object
) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def test_a_token_verifies_to_its_claims():
    original = claims()
    assert verify(sign(original, SECRET), SECRET, NOW) == original


def test_the_token_is_hs256_with_every_claim():
    original = claims()
    token = sign(original, SECRET)
    assert unb64(token.split(".")[0]) == {"alg": "HS256", "typ": "JWT"}
    payload = payload_of(token)
    assert payload == {
        "iss": "agentmessage",
        "aud": "agentmessage:hosted-form",
        "org": str(original.org),
        "pn": str(original.phone_number_id),
        "cn": "+15554443333",
        "ath": b64(bytes.fromhex(original.agreement_sha256)),
        "jti": str(original.token_id),
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 3600,
    }
    assert str(payload["jti"])[14] == "7"  # UUIDv7


def test_the_key_is_derived_for_tokens_only():
    """Neither the raw secret (cursors use it) nor another purpose's key signs tokens."""
    assert token_key(SECRET) == hmac.new(SECRET, b"hosted-form-token", hashlib.sha256).digest()
    payload = payload_of(sign(claims(), SECRET))
    for key in (SECRET, hmac.new(SECRET, b"cursor", hashlib.sha256).digest()):
        with pytest.raises(InvalidLink):
            verify(resigned(payload, key=key), SECRET, NOW)


def test_expiry_follows_our_clock_to_the_second():
    token = sign(claims(), SECRET)
    assert verify(token, SECRET, NOW + timedelta(seconds=3599))
    with pytest.raises(ExpiredLink):
        verify(token, SECRET, NOW + timedelta(seconds=3600))
    # Far in the real past or future: PyJWT's own idea of "now" plays no part.
    past = claims(
        issued_at=datetime(2001, 1, 1, tzinfo=UTC), expires_at=datetime(2001, 1, 2, tzinfo=UTC)
    )
    assert verify(sign(past, SECRET), SECRET, datetime(2001, 1, 1, 12, tzinfo=UTC))


def test_a_tampered_expired_token_is_invalid_not_expired():
    token = sign(claims(), SECRET)
    header, _payload, signature = token.split(".")
    tampered = f"{header}.{b64({**payload_of(token), 'cn': '+15559990000'})}.{signature}"
    with pytest.raises(InvalidLink):
        verify(tampered, SECRET, NOW + timedelta(days=2))


def test_a_wrong_signature_is_invalid():
    token = sign(claims(), SECRET)
    with pytest.raises(InvalidLink):
        verify(token, b"another-secret-key-0123456789-0123456789", NOW)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidLink):
        verify(f"{header}.{payload}.{flipped}", SECRET, NOW)


def test_alg_none_is_invalid():
    payload = payload_of(sign(claims(), SECRET))
    for alg in ("none", "None", "NONE"):
        unsigned = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."
        with pytest.raises(InvalidLink):
            verify(unsigned, SECRET, NOW)


def test_other_algorithms_are_refused_even_with_our_key():
    """The algorithm is pinned: HS512 with the right key, or an RS256 header (the
    RS/HS confusion), fails."""
    payload = payload_of(sign(claims(), SECRET))
    with warnings.catch_warnings():  # PyJWT rightly finds 32 bytes short for HS512
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(payload, token_key(SECRET), algorithm="HS512")
    with pytest.raises(InvalidLink):
        verify(hs512, SECRET, NOW)
    _header, body, signature = resigned(payload).split(".")
    rs256 = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{body}.{signature}"
    with pytest.raises(InvalidLink):
        verify(rs256, SECRET, NOW)


def test_claims_swapped_between_two_tokens_are_invalid():
    first, second = sign(claims(), SECRET), sign(claims(), SECRET)
    h1, p1, s1 = first.split(".")
    _h2, p2, s2 = second.split(".")
    for swapped in (f"{h1}.{p2}.{s1}", f"{h1}.{p1}.{s2}"):
        with pytest.raises(InvalidLink):
            verify(swapped, SECRET, NOW)


@pytest.mark.parametrize("claim", ["iss", "aud", "org", "pn", "cn", "ath", "jti", "iat", "exp"])
def test_every_claim_is_required(claim):
    payload = payload_of(sign(claims(), SECRET))
    del payload[claim]
    with pytest.raises(InvalidLink):
        verify(resigned(payload), SECRET, NOW)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", "someone-else"),
        ("aud", "agentmessage:cursor"),
        ("org", "not-a-uuid"),
        ("pn", 12),
        ("jti", ""),
        ("cn", "5554443333"),
        ("ath", "short"),
        ("exp", "2026-04-27T13:00:00Z"),
        ("iat", 1.5),
        # A lifetime longer than a day was never minted here.
        ("exp", int(NOW.timestamp()) + 86401),
        ("exp", int(NOW.timestamp())),
    ],
)
def test_malformed_claims_are_invalid(claim, value):
    payload = {**payload_of(sign(claims(), SECRET)), claim: value}
    with pytest.raises(InvalidLink):
        verify(resigned(payload), SECRET, NOW)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b", "..", "eyJ.eyJ.x", "x" * 5000, "é.é.é"],
)
def test_malformed_tokens_are_invalid(token):
    with pytest.raises(InvalidLink):
        verify(token, SECRET, NOW)


def test_a_generated_secret_survives_a_restart(tmp_path):
    """No AGENTMESSAGE_SECRET_KEY: the secret generated into the data dir signs
    tokens that a new process (new Settings) still accepts."""
    first = Settings(data_dir=tmp_path, secret_key=None)
    token = sign(claims(), first.signing_secret)
    assert (tmp_path / "secret_key").exists()
    restarted = Settings(data_dir=tmp_path, secret_key=None)
    assert verify(token, restarted.signing_secret, NOW).contact_number == "+15554443333"
    elsewhere = Settings(data_dir=tmp_path / "other", secret_key=None)
    with pytest.raises(InvalidLink):
        verify(token, elsewhere.signing_secret, NOW)


def test_token_ids_are_unique():
    tokens = {payload_of(sign(claims(token_id=new_id()), SECRET))["jti"] for _ in range(100)}
    assert len(tokens) == 100
    assert all(uuid.UUID(str(jti)).version == 7 for jti in tokens)
