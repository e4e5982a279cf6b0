"""The opt-out confirmation: the one SMS a contact gets after opting out.

CTIA: it confirms the opt-out and nothing else, no marketing. An organization
may set its own fixed text; it is checked when set.
"""

from __future__ import annotations

import re
from typing import Final

MAX_LENGTH: Final = 160  # one GSM-7 segment
_LINK: Final = re.compile(r"(https?://|www\.|\b[\w-]+\.(com|net|org|io|co|ly|me)\b)", re.I)
_MARKETING: Final = re.compile(
    r"\b(sale|sales|discount|discounts|offer|offers|deal|deals|coupon|coupons|promo|promos|"
    r"promotion|free|buy|shop|save|% ?off|oferta|ofertas|descuento|descuentos|gratis)\b",
    re.I,
)
_CONFIRMS: Final = re.compile(
    r"(unsubscribed|opted out|opted-out|no more (messages|texts)|will not (get|receive)|"
    r"won.t (get|receive)|dado de baja|no recibir)",
    re.I,
)


def problem(text: str) -> str | None:
    """Why ``text`` cannot be the opt-out confirmation, or None."""
    body = text.strip()
    if not 1 <= len(body) <= MAX_LENGTH:
        return f"must be 1..{MAX_LENGTH} characters (one SMS segment)"
    if _LINK.search(body):
        return "must not contain a link: it confirms the opt-out and nothing else"
    if _MARKETING.search(body):
        return "must not market anything: it confirms the opt-out and nothing else"
    if not _CONFIRMS.search(body):
        return 'must tell the contact they are unsubscribed (e.g. "you are unsubscribed")'
    return None


def default(program: str) -> str:
    return (
        f"{program}: you are unsubscribed and will get no more messages from this number. "
        "Reply START to resubscribe."
    )
