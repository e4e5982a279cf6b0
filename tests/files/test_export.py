"""agentmessage consents export: the import's own columns, so files round-trip."""

from __future__ import annotations

import csv
import io
import json
import re

from sqlalchemy import select

from agentmessage.auth.service import Caller, create_key
from agentmessage.consent.repository import ListFilters
from agentmessage.consent.schemas import parse_capture
from agentmessage.consent.service import capture
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.files.exporter import COLUMNS, export_rows, write_export
from agentmessage.files.importer import import_consents
from tests.files.conftest import make_org
from tests.files.test_import import MESSY, snapshot, write

E164 = re.compile(r"\+[0-9]+")


async def export(database, org, fmt="csv", **filters) -> str:
    out = io.StringIO()
    await write_export(export_rows(database, org.id, ListFilters(**filters)), out, fmt)
    return out.getvalue()


async def test_export_then_import_into_another_organization_reproduces_the_records(
    database, fresh_database, org, tmp_path
):
    await import_consents(database, org_id=org.id, path=write(tmp_path, MESSY))
    exported = await export(database, org)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert list(rows[0]) == list(COLUMNS)
    assert {r["contact_number"] for r in rows} == {"+15554443333", "+15554443334", "+15554443342"}

    # Another service's organization: a sender number belongs to one organization.
    other = await make_org(fresh_database)
    report = await import_consents(
        fresh_database, org_id=other.id, path=write(tmp_path, exported, "exported.csv")
    )
    assert (report.accepted, report.rejected) == (3, 0)
    original = [row[:6] for row in await snapshot(database, org) if len(row) == 6]
    copied = [row[:6] for row in await snapshot(fresh_database, other) if len(row) == 6]
    assert copied == original


async def test_jsonl_and_filters(database, org, tmp_path):
    await import_consents(database, org_id=org.id, path=write(tmp_path, MESSY))
    lines = (await export(database, org, "jsonl", opted_in=False)).splitlines()
    assert [json.loads(line)["contact_number"] for line in lines] == ["+15554443342"]
    assert json.loads(lines[0])["opted_in"] is False
    assert json.loads(lines[0])["phone_number"] == "+15550100001"


async def test_export_streams_past_one_page(database, org, tmp_path):
    from tests.files.test_import import big_file

    await import_consents(database, org_id=org.id, path=big_file(tmp_path, 2500))
    rows = list(csv.DictReader(io.StringIO(await export(database, org))))
    assert len(rows) == 2500 - len(range(0, 2500, 97))
    assert len({r["contact_number"] for r in rows}) == len(rows)


# Cells a spreadsheet runs as a formula (OWASP's list), planted where anyone with a
# hosted-form link can plant them: the agreement text and the browser's user agent.
FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd", "-1+1", "@SUM(A1)", "\t=1", "\r=1"]
# Genuine texts that look like the export's own neutralisation, or like a number.
LOOKALIKES = ['\'=HYPERLINK("http://x","y")', "''+cmd", "'quoted", "+15551234567"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


async def capture_texts(database, org, texts: list[str]) -> dict[str, str]:
    """One opt-in per text, through the API's capture, with the text as both its
    agreement text and its user agent; each contact's text."""
    contacts = {f"+1555444{3300 + i}": text for i, text in enumerate(texts)}
    async with database.session(writes=True) as session:
        key = await create_key(session, org_id=org.id, scopes=("consent:write",))
        caller = Caller(
            org_id=org.id,
            org_name="Files",
            plan="growth",
            rate_limit_per_minute=None,
            key_id=key.key.id,
            scopes=frozenset({"consent:write"}),
        )
        for contact, text in contacts.items():
            evidence = {
                "captured_at": "2026-04-26T12:00:00Z",
                "consent_method": "checkbox",
                "agreement_text": text,
                "ip_address": "203.0.113.42",
                "user_agent": text,
                "form_url": "https://example.com/signup",
            }
            body = {
                "phone_number_id": str(org.number_id),
                "contact_number": contact,
                "opted_in": True,
                "evidence": evidence,
            }
            await capture(session, caller, parse_capture(body))
        await session.commit()
    return contacts


async def evidence_by_contact(database, org) -> dict[str, dict]:
    async with database.session(writes=False) as session:
        rows = await session.execute(
            select(ConsentRecord.contact_number, ConsentEvent.evidence)
            .join(ConsentRecord, ConsentRecord.id == ConsentEvent.consent_id)
            .where(ConsentEvent.org_id == org.id)
        )
        return {contact: evidence for contact, evidence in rows}


async def test_csv_export_neutralises_formulas_and_import_gives_the_text_back(
    database, org, tmp_path, agentmessage, fresh_database
):
    contacts = await capture_texts(database, org, FORMULAS + LOOKALIKES)
    exported = tmp_path / "export.csv"
    done = agentmessage("consents", "export", "--org", str(org.id), "-o", str(exported))
    assert done.returncode == 0, done.stderr

    with exported.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(contacts)
    cells = [cell for row in rows for cell in row.values()]
    # An E.164 number is a plain number to a spreadsheet: it stays as it is.
    assert [c for c in cells if c.startswith(FORMULA_START) and not E164.fullmatch(c)] == []
    by_contact = {row["contact_number"]: row for row in rows}
    assert {by_contact[c]["agreement_text"] for c in contacts} == {
        '\'=HYPERLINK("http://x","y")',
        "'+cmd",
        "'-1+1",
        "'@SUM(A1)",
        "'\t=1",
        "'\r=1",
        '\'\'=HYPERLINK("http://x","y")',
        "'''+cmd",
        "'quoted",  # a quote before a harmless character is left alone
        "+15551234567",
    }
    assert {row["phone_number"] for row in rows} == {"+15550100001"}

    # JSON Lines holds the texts as they are: no spreadsheet runs it.
    lines = agentmessage("consents", "export", "--org", str(org.id), "--format", "jsonl")
    assert lines.returncode == 0, lines.stderr
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert {r["contact_number"]: (r["agreement_text"], r["user_agent"]) for r in records} == {
        contact: (text, text) for contact, text in contacts.items()
    }

    other = await make_org(fresh_database)
    imported = agentmessage(
        "consents", "import", str(exported), "--org", str(other.id), on=fresh_database
    )
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert (summary["accepted"], summary["rejected"]) == (len(contacts), 0)
    copied = await evidence_by_contact(fresh_database, other)
    assert copied == await evidence_by_contact(database, org)
    assert {contact: evidence["agreement_text"] for contact, evidence in copied.items()} == contacts
