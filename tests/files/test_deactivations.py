"""Deactivated numbers: consent from a number's previous owner stops counting."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from agentmessage.consent.repository import ConsentRepository
from agentmessage.db.models import ConsentRecord
from agentmessage.files.importer import import_consents
from tests.files.conftest import make_org
from tests.files.test_import import write
from tests.fixtures.edge_values import EDGE_TIMES, TOO_EARLY

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))

CONSENTS = (
    "contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\n"
    "+15554443333,true,2026-04-01T12:00:00Z,checkbox,Text,+15550100001\n"  # before: opted out
    "+15554443334,true,2026-04-25T12:00:00Z,checkbox,Text,+15550100001\n"  # after: kept
    "+15554443335,true,2026-04-20T09:00:00Z,checkbox,Text,+15550100001\n"  # same day: out
    "+15554443336,false,2026-04-01T12:00:00Z,written,Text,+15550100001\n"  # already out
)
FEED = (
    "number,deactivated_at\n"
    "+15554443333,2026-04-20\n"
    "+15554443334,2026-04-20T00:00:00Z\n"
    "+15554443335,2026-04-20\n"
    "+15554443336,2026-04-20\n"
    "not-a-number,2026-04-20\n"
    "+15554443337,someday\n"
)


async def states(database, org) -> dict[str, tuple]:
    async with database.session(writes=False) as session:
        rows = await session.execute(
            select(
                ConsentRecord.contact_number,
                ConsentRecord.opted_in,
                ConsentRecord.source,
                ConsentRecord.consent_method,
                ConsentRecord.opted_out_at,
            ).where(ConsentRecord.org_id == org.id)
        )
        return {r[0]: tuple(r[1:]) for r in rows}


def run_feed(database, tmp_path, text: str) -> dict:
    path = write(tmp_path, text, "feed.csv")
    env = {
        **os.environ,
        "AGENTMESSAGE_DATABASE_URL": database.url,
        "AGENTMESSAGE_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [AGENTMESSAGE, "deactivations", "import", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_the_carrier_feed_opts_out_older_consent_in_every_organization(
    database, org, tmp_path
):
    other = await make_org(database, number="+15550100002")
    for tenant in (org, other):
        consents = CONSENTS.replace("+15550100001", tenant.number)
        await import_consents(database, org_id=tenant.id, path=write(tmp_path, consents))

    summary = run_feed(database, tmp_path, FEED)
    assert summary["lines"] == 6
    assert summary["invalid"] == 2
    assert summary["opted_out"] == 4  # two contacts in each of two organizations

    for tenant in (org, other):
        state = await states(database, tenant)
        assert state["+15554443333"][:3] == (False, "system", "checkbox")
        assert state["+15554443334"][:2] == (True, "api")
        assert state["+15554443335"][:2] == (False, "system")
        assert state["+15554443336"][:2] == (False, "api")
    async with database.session(writes=False) as session:
        repo = ConsentRepository(session)
        record = await session.scalar(
            select(ConsentRecord).where(
                ConsentRecord.org_id == org.id, ConsentRecord.contact_number == "+15554443333"
            )
        )
        events = await repo.events(org.id, record.id)
    assert [e.reason for e in events] == ["import:csv", "number_deactivated"]
    assert events[-1].evidence == {
        "channel": "carrier_feed",
        "file": "feed.csv",
        "line": 2,
        "date": "2026-04-20",
    }
    assert events[-1].source == "system"
    assert events[-1].consent_method is None

    with (tmp_path / "feed.rejects.csv").open(newline="") as handle:
        assert list(csv.reader(handle))[1:] == [
            ["6", "number", "must be E.164"],
            ["7", "deactivated_at", "must be a date (2026-04-20) or an RFC 3339 date-time"],
        ]

    # Applying the same file again changes nothing more.
    assert run_feed(database, tmp_path, FEED)["opted_out"] == 0


async def test_a_fresh_opt_in_after_the_deactivation_is_unaffected(database, org, tmp_path):
    await import_consents(database, org_id=org.id, path=write(tmp_path, CONSENTS))
    run_feed(database, tmp_path, FEED)
    fresh = (
        "contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\n"
        "+15554443333,true,2026-05-01T12:00:00Z,checkbox,New owner,+15550100001\n"
    )
    await import_consents(database, org_id=org.id, path=write(tmp_path, fresh, "fresh.csv"))
    assert run_feed(database, tmp_path, FEED)["opted_out"] == 0
    assert (await states(database, org))["+15554443333"][0] is True


async def test_times_out_of_range_or_before_1992_reject_their_lines_and_exit_0(
    database, org, tmp_path
):
    await import_consents(database, org_id=org.id, path=write(tmp_path, CONSENTS))
    times = [*(p.values for p in EDGE_TIMES), ("1991-12-31", TOO_EARLY)]
    feed = "number,deactivated_at\n" + "".join(f"+15554443333,{at}\n" for at, _ in times)
    summary = run_feed(database, tmp_path, feed)
    assert (summary["lines"], summary["invalid"], summary["opted_out"]) == (
        len(times),
        len(times),
        0,
    )
    with (tmp_path / "feed.rejects.csv").open(newline="") as handle:
        assert list(csv.reader(handle))[1:] == [
            [str(2 + i), "deactivated_at", reason] for i, (_, reason) in enumerate(times)
        ]
    assert (await states(database, org))["+15554443333"][0] is True


async def test_a_quote_never_closed_refuses_the_feed_and_applies_nothing(
    database, org, tmp_path, agentmessage
):
    """Read leniently, line 3 would be one number holding every line after it: a
    reject, and the deactivations of lines 4 to 6 silently gone."""
    await import_consents(database, org_id=org.id, path=write(tmp_path, CONSENTS))
    before = await states(database, org)
    feed = FEED.replace("+15554443334,", '"+15554443334,', 1)
    path = write(tmp_path, feed, "feed.csv")
    done = agentmessage("deactivations", "import", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "agentmessage: error: line 3: the quote that opens the number field of this row " in (
        done.stderr
    )
    assert "is never closed" in done.stderr
    assert await states(database, org) == before
