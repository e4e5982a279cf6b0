"""Export of consent records in the import's own columns, streamed in constant
memory (keyset pages of the list endpoint's query), so that export then import
into another organization reproduces the records.

CSV cells that a spreadsheet would run as a formula are neutralised with a
leading quote, which the import takes off again (``csvfile.neutralise``); JSON
Lines holds every value as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson

from agentmessage.auth.service import OrgScope
from agentmessage.consent.repository import ConsentRepository, ListFilters, Position
from agentmessage.db.engine import Database
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.files.csvfile import neutralise
from agentmessage.kit.timefmt import format_rfc3339

COLUMNS = (
    "phone_number",
    "contact_number",
    "opted_in",
    "captured_at",
    "consent_method",
    "agreement_text",
    "ip_address",
    "user_agent",
    "form_url",
)
PAGE = 1000
Format = Literal["csv", "jsonl"]


async def export_rows(
    database: Database, org: OrgScope, filters: ListFilters
) -> AsyncIterator[dict[str, Any]]:
    """One dict per record, newest change first, in short read transactions."""
    after: Position | None = None
    while True:
        async with database.session(writes=False) as session:
            repo = ConsentRepository(session)
            records = await repo.page(org, filters, after, PAGE)
            if not records:
                return
            numbers = await repo.sender_numbers(org)
            evidence = await repo.latest_evidence(org, [r.id for r in records])
        for record in records:
            yield _row(record, numbers, evidence.get(record.id))
        last = records[-1]
        after = Position(updated_at=last.updated_at, id=last.id)
        if len(records) < PAGE:
            return


def _row(
    record: ConsentRecord, numbers: dict[Any, str], event: ConsentEvent | None
) -> dict[str, Any]:
    captured_at = record.opted_in_at if record.opted_in else record.opted_out_at
    evidence = (event.evidence if event else None) or {}
    agreement = evidence.get("agreement_text")
    if not agreement:
        # A revocation carries no agreement; say what the record holds instead.
        agreement = f"recorded as {event.reason}" if event else "no agreement text recorded"
    return {
        "phone_number": numbers.get(record.phone_number_id, ""),
        "contact_number": record.contact_number,
        "opted_in": record.opted_in,
        "captured_at": format_rfc3339(captured_at) if captured_at else "",
        "consent_method": record.consent_method,
        "agreement_text": agreement,
        "ip_address": evidence.get("ip_address") or "",
        "user_agent": evidence.get("user_agent") or "",
        "form_url": evidence.get("form_url") or "",
    }


async def write_export(
    rows: AsyncIterator[dict[str, Any]], out: io.TextIOBase | Any, fmt: Format
) -> int:
    """Write rows as CSV (header first, formula cells neutralised) or JSON Lines;
    how many were written."""
    count = 0
    if fmt == "csv":
        # CRLF, as RFC 4180 has it: the csv module quotes a cell holding any character
        # of the line terminator, so a lone CR in a text (a user agent) stays in its
        # cell instead of ending the row.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        async for row in rows:
            cells = {**row, "opted_in": "true" if row["opted_in"] else "false"}
            writer.writerow([neutralise(cells[name]) for name in COLUMNS])
            count += 1
    else:
        async for row in rows:
            out.write(orjson.dumps(row).decode() + "\n")
            count += 1
    return count
