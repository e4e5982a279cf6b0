"""Blank text: nothing a reader can see, whatever ``str.strip`` thinks."""

from __future__ import annotations

import pytest

from agentmessage.kit.text import is_blank
from tests.fixtures.edge_values import INVISIBLE_TEXTS


@pytest.mark.parametrize("text", [*INVISIBLE_TEXTS, "", " ", "\t\r\n"])
def test_text_with_nothing_visible_is_blank(text: str) -> None:
    assert is_blank(text)


@pytest.mark.parametrize(
    "text",
    ["x", ".", "\u200bReply STOP\u200b", "é", "e\u0301", "中文", "שלום", "😀", "\u3164가"],
)
def test_text_with_one_visible_character_is_not(text: str) -> None:
    assert not is_blank(text)
