"""Revocation in the contact's own words (FCC 2024 order: "any reasonable means").

Exact keywords (STOP, UNSUBSCRIBE...) are ``keywords.py``'s. This reads every
other reply with the rules of ``revocation_rules.json``, in order:

1. phrases a reasonable person reads as "stop texting me", in English and
   Spanish ("stop texting me", "no más mensajes"): revoke;
2. clear non-revocations ("can I stop by", "don't stop the deals"): nothing;
3. a per-se keyword that is the whole reply ("Baja") or a sentence of it
   ("Stop. Who is this?"), or starts a short reply ("Stop please") or ends
   one ("please stop"): revoke;
4. anything else holding an opt-out word ("cancel" in "can I cancel?"): a
   person reviews it (possible_revocation);
5. the rest: nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal

RULES_FILE: Final = Path(__file__).with_name("revocation_rules.json")
_SENTENCES: Final = re.compile(r"[.!?;\n\u00a1\u00bf]+")

Kind = Literal["revoke", "review", "none"]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    rule: str | None = None
    """``phrase:stop_texting_me`` (revoke), ``not:stop_by`` (none), or the
    ``review:<word>`` that made a person look at it."""


@dataclass(frozen=True, slots=True)
class Rules:
    per_se: frozenset[str]
    at_end: frozenset[str]
    alone_only: frozenset[str]
    short_reply_words: int
    continuations: frozenset[str]
    not_revocation: tuple[tuple[str, re.Pattern[str]], ...]
    phrases: tuple[tuple[str, re.Pattern[str]], ...]
    review_words: frozenset[str]


@cache
def rules() -> Rules:
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))

    def compiled(items: list[dict[str, str]]) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return tuple((item["name"], re.compile(item["pattern"])) for item in items)

    return Rules(
        per_se=frozenset(data["per_se_keywords"]),
        at_end=frozenset(data["per_se_at_end"]),
        alone_only=frozenset(data["alone_only"]),
        short_reply_words=int(data["short_reply_words"]),
        continuations=frozenset(data["continuations"]),
        not_revocation=compiled(data["not_revocation"]),
        phrases=compiled(data["phrases"]),
        review_words=frozenset(data["review_words"]),
    )


def normalize(text: str) -> str:
    """Lower case, accents and apostrophes gone, every other non-letter/digit a
    space: "¡NO más mensajes!" -> "no mas mensajes", "Don\\u2019t" -> "dont"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[\W_]+", " ", plain).split())


def classify(text: str) -> Verdict:
    """How a reply that is not exactly a keyword is to be read."""
    r = rules()
    norm = normalize(text)
    words = norm.split()
    if not words:
        return Verdict("none")
    for name, pattern in r.phrases:
        if pattern.search(norm):
            return Verdict("revoke", f"phrase:{name}")
    for name, pattern in r.not_revocation:
        if pattern.search(norm):
            return Verdict("none", f"not:{name}")
    short = len(words) <= r.short_reply_words
    first, last = words[0], words[-1]
    if len(words) == 1 and first in r.per_se:
        return Verdict("revoke", "phrase:keyword_alone")
    # "Stop!!! who gave you my number": a keyword that is a sentence of its own.
    for sentence in _SENTENCES.split(text):
        said = normalize(sentence)
        if said in r.per_se and said not in r.alone_only:
            return Verdict("revoke", "phrase:keyword_sentence")
    if (
        short
        and first in r.per_se
        and first not in r.alone_only
        and words[1] not in r.continuations
    ):
        return Verdict("revoke", "phrase:keyword_start")
    if short and last in r.at_end:
        return Verdict("revoke", "phrase:keyword_end")
    for word in words:
        if word in r.review_words:
            return Verdict("review", f"review:{word}")
    return Verdict("none")
