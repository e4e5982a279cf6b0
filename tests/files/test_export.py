"""agentmessage consents export: the import's own columns, so files round-trip."""

from __future__ import annotations

import csv
import io
import json

from agentmessage.consent.repository import ListFilters
from agentmessage.files.exporter import COLUMNS, export_rows, write_export
from agentmessage.files.importer import import_consents
from tests.files.conftest import make_org
from tests.files.test_import import MESSY, snapshot, write


async def export(database, org, fmt="csv", **filters) -> str:
    out = io.StringIO()
    await write_export(export_rows(database, org.id, ListFilters(**filters)), out, fmt)
    return out.getvalue()


async def test_export_then_import_into_another_organization_reproduces_the_records(
    database, org, tmp_path
):
    await import_consents(database, org_id=org.id, path=write(tmp_path, MESSY))
    exported = await export(database, org)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert list(rows[0]) == list(COLUMNS)
    assert {r["contact_number"] for r in rows} == {"+15554443333", "+15554443334", "+15554443342"}

    other = await make_org(database)
    report = await import_consents(
        database, org_id=other.id, path=write(tmp_path, exported, "exported.csv")
    )
    assert (report.accepted, report.rejected) == (3, 0)
    original = [row[:6] for row in await snapshot(database, org) if len(row) == 6]
    copied = [row[:6] for row in await snapshot(database, other) if len(row) == 6]
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
