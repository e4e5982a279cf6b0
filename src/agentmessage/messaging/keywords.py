"""The reply keywords of SPEC.md ("Keywords on any inbound SMS", "Double opt-in").

A reply is a keyword only when the whole message is one, after normalization:
case, surrounding whitespace and trailing punctuation do not matter, and the
spellings OPT OUT / OPT-OUT / OPTOUT are one word. "STOP please" is not a keyword.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Final


class KeywordKind(enum.Enum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"


# The FCC/CTIA opt-out words.
OPT_OUT_KEYWORDS: Final = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS: Final = frozenset({"START", "UNSTOP"})
HELP_KEYWORDS: Final = frozenset({"HELP", "INFO"})
CONFIRM_KEYWORDS: Final = frozenset({"YES", "Y", "CONFIRM"})

_KINDS: Final = {
    **dict.fromkeys(OPT_OUT_KEYWORDS, KeywordKind.OPT_OUT),
    **dict.fromkeys(OPT_IN_KEYWORDS, KeywordKind.OPT_IN),
    **dict.fromkeys(HELP_KEYWORDS, KeywordKind.HELP),
    **dict.fromkeys(CONFIRM_KEYWORDS, KeywordKind.CONFIRM),
}
_OPT_OUT_SPELLINGS: Final = re.compile(r"^OPT[\s\-_]*OUT$")


@dataclass(frozen=True, slots=True)
class Keyword:
    kind: KeywordKind
    word: str
    """The normalized keyword (``STOP``, ``OPTOUT``, ``YES``): what history reasons name."""


def normalize(text: str) -> str:
    """Upper case, inner whitespace collapsed, surrounding whitespace and trailing
    punctuation (any Unicode punctuation or symbol, emoji included) removed."""
    cleaned = " ".join(text.split()).upper()
    end = len(cleaned)
    while end and (cleaned[end - 1].isspace() or _is_punctuation(cleaned[end - 1])):
        end -= 1
    cleaned = cleaned[:end]
    if _OPT_OUT_SPELLINGS.match(cleaned):
        return "OPTOUT"
    return cleaned


def keyword_of(text: str) -> Keyword | None:
    """The keyword the whole message is, or None."""
    word = normalize(text)
    kind = _KINDS.get(word)
    return Keyword(kind, word) if kind is not None else None


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in ("P", "S")
