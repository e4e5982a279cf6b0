"""API key format and hashing. The plain key exists only in the create response."""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

KEY_PREFIX: Final = "am_live_"
SCOPES: Final = ("consent:read", "consent:write", "messages:read", "messages:write")


def generate_key() -> str:
    """``am_live_`` + 43 url-safe characters (256 bits of randomness)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough: there is nothing
    # to brute-force, and authentication stays one indexed lookup.
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(key: str) -> bool:
    body = key.removeprefix(KEY_PREFIX)
    return (
        key.startswith(KEY_PREFIX)
        and 32 <= len(body) <= 128
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in body)
    )
