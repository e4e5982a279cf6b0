"""The revocation classifier against tests/data/revocation_corpus.csv: labelled
real-world style replies (English and Spanish, typos, emoji, mixed case), read
exactly as an inbound SMS is read (exact keywords first, then the rules)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from agentmessage.messaging.keywords import KeywordKind, keyword_of
from agentmessage.messaging.revocation import RULES_FILE, Verdict, classify

CORPUS = Path(__file__).resolve().parents[1] / "data" / "revocation_corpus.csv"


def read(message: str) -> Verdict:
    keyword = keyword_of(message)
    if keyword is not None and keyword.kind is KeywordKind.OPT_OUT:
        return Verdict("revoke", f"keyword:{keyword.word}")
    return classify(message)


def corpus() -> list[dict[str, str]]:
    with CORPUS.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("line", corpus(), ids=lambda line: line["message"][:40])
def test_every_labelled_reply_is_read_as_labelled(line: dict[str, str]) -> None:
    verdict = read(line["message"])
    assert verdict.kind == line["expected"], (line["message"], verdict)
    if line["rule"]:
        assert verdict.rule == line["rule"], (line["message"], verdict)


def test_the_corpus_is_big_bilingual_and_balanced() -> None:
    lines = corpus()
    assert len(lines) >= 150
    kinds = Counter(line["expected"] for line in lines)
    assert kinds["revoke"] >= 60 and kinds["none"] >= 30 and kinds["review"] >= 15
    spanish = [
        line
        for line in lines
        if any(
            w in line["message"].lower() for w in ("mensaj", "baja", "favor", "numero", "número")
        )
    ]
    assert len(spanish) >= 25


def test_no_rule_exists_for_one_line_only() -> None:
    """Every phrase and non-revocation rule of the data file is what at least two
    different corpus lines are read by."""
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    used = Counter(read(line["message"]).rule for line in corpus())
    names = [f"phrase:{r['name']}" for r in data["phrases"]]
    names += [f"not:{r['name']}" for r in data["not_revocation"]]
    names += ["phrase:keyword_alone", "phrase:keyword_sentence", "phrase:keyword_start"]
    names += ["phrase:keyword_end"]
    thin = {name: used[name] for name in names if used[name] < 2}
    assert thin == {}
