"""Blank text: no character a reader can see, whatever ``str.strip`` thinks."""

from __future__ import annotations

import unicodedata
from typing import Final

# Format characters (zero-width spaces and joiners, bidi controls, the byte order
# mark, soft hyphen, tags), controls, and separators of every kind draw nothing.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})

# Letters and marks that draw nothing either: fillers, the blank braille pattern,
# the combining grapheme joiner and the variation selectors (Unicode's
# Default_Ignorable_Code_Point characters outside the categories above).
_INVISIBLE_CHARACTERS: Final = frozenset(
    "\u034f"  # combining grapheme joiner
    "\u115f\u1160"  # hangul choseong and jungseong fillers
    "\u17b4\u17b5"  # khmer inherent vowels
    "\u2800"  # braille pattern blank
    "\u3164"  # hangul filler
    "\uffa0"  # halfwidth hangul filler
    + "".join(map(chr, range(0x180B, 0x1810)))  # mongolian free variation selectors
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors 1..16
    + "".join(map(chr, range(0xE0100, 0xE01F0)))  # variation selectors 17..256
)


def _visible(character: str) -> bool:
    return (
        character not in _INVISIBLE_CHARACTERS
        and unicodedata.category(character) not in _INVISIBLE_CATEGORIES
    )


def is_blank(text: str) -> bool:
    """True when no character of ``text`` is visible: empty, whitespace, or only
    format, control, separator and filler characters (``"\\u200b\\u200b"``)."""
    return not any(map(_visible, text))
