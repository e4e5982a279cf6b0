"""Write a sample consents CSV for `agentmessage consents import`, with a share of
bad rows of every kind, as a real export from another system would have.

    .venv/bin/python bench/make_consents_csv.py sample.csv --rows 10000 --sender +15550100001
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator
from pathlib import Path

from agentmessage.files.exporter import COLUMNS  # the import's own columns

METHODS = ("checkbox", "written", "verbal", "attested")
# One in every BAD_EVERY rows is broken, in turn, in one of these ways.
BREAKAGES = (
    ("contact_number", "555-0100"),
    ("opted_in", "maybe"),
    ("captured_at", "last tuesday"),
    ("consent_method", "telepathy"),
    ("agreement_text", ""),
    ("ip_address", "999.1.1.1"),
)
BAD_EVERY = 50


def rows(count: int, sender: str, seed: int, first_contact: int = 0) -> Iterator[list[str]]:
    rng = random.Random(seed)
    for i in range(count):
        row = {
            "contact_number": f"+1555{first_contact + i:07d}",
            "opted_in": "true" if rng.random() < 0.85 else "false",
            "captured_at": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            "consent_method": rng.choice(METHODS),
            "agreement_text": "By signing up you agree to receive appointment reminders from "
            "Demo Dental. Msg & data rates may apply. Reply STOP to opt out.",
            "ip_address": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
            "form_url": "https://example.com/signup",
            "phone_number": sender,
        }
        if i % BAD_EVERY == BAD_EVERY - 1:
            column, value = BREAKAGES[(i // BAD_EVERY) % len(BREAKAGES)]
            row[column] = value
        yield [row[c] for c in COLUMNS]


def write_csv(path: Path, count: int, sender: str, *, seed: int = 7, first_contact: int = 0) -> int:
    """Write ``count`` rows; how many of them are bad."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows(count, sender, seed, first_contact))
    return count // BAD_EVERY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--sender", default="+15550100001", help="the sender number column")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    bad = write_csv(args.output, args.rows, args.sender, seed=args.seed)
    print(f"wrote {args.rows:,} rows ({bad:,} of them bad) to {args.output}")


if __name__ == "__main__":
    main()
