"""Opaque, tamper-evident keyset cursors: base64url JSON and an HMAC over it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

_MAC_BYTES = 16


class InvalidCursor(Exception):
    """The cursor was not made by this server for this query."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"cursor\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(payload: dict[str, Any], secret: bytes) -> str:
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{_b64(body)}.{_b64(_mac(secret, body))}"


def decode_cursor(cursor: str, secret: bytes) -> dict[str, Any]:
    """The payload, or InvalidCursor if it was altered or never ours."""
    if len(cursor) > 1024 or cursor.count(".") != 1:
        raise InvalidCursor
    body_text, mac_text = cursor.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise InvalidCursor from None
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise InvalidCursor
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidCursor from None
    if not isinstance(payload, dict):
        raise InvalidCursor
    return payload
