"""The carrier feed file (``number,deactivated_at`` lines), applied to every organization."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import PydanticCustomError
from sqlalchemy import select

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database
from agentmessage.db.models import Organization
from agentmessage.deactivations.service import (
    Deactivation,
    apply_deactivations,
    parse_deactivated_at,
)
from agentmessage.files.csvfile import (
    RejectsFile,
    UnreadableFile,
    fingerprint,
    open_text,
    read_rows,
    rejects_path,
)
from agentmessage.kit.phone import e164_problem

BATCH_LINES = 5000
ACTOR = {"type": "carrier_feed"}


class FeedUsageError(Exception):
    """An unreadable file or a missing column: nothing was applied (exit 2)."""


@dataclass(slots=True)
class FeedReport:
    file: str
    lines: int = 0
    invalid: int = 0
    opted_out: int = 0
    rejects_file: str | None = None
    organizations: int = 0
    details: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lines": self.lines,
            "invalid": self.invalid,
            "opted_out": self.opted_out,
            "organizations": self.organizations,
            "rejects_file": self.rejects_file,
        }


async def import_feed(
    database: Database, path: Path, progress: Callable[[int, int], None] | None = None
) -> FeedReport:
    """Apply a deactivation file to every organization, in batches (each its own
    transaction per organization). Rerunning the same file changes nothing more."""
    try:
        # The whole file first (UTF-8, every quote closed), so a bad line far down
        # refuses it before any line is applied.
        fingerprint(path)
        text, raw = open_text(path)
    except UnreadableFile as exc:
        raise FeedUsageError(str(exc)) from None
    report = FeedReport(file=str(path))
    async with database.session(writes=False) as session:
        orgs = [OrgScope(org_id) for org_id in await session.scalars(select(Organization.id))]
    report.organizations = len(orgs)
    with text:
        try:
            header, rows = read_rows(text)
        except UnreadableFile as exc:
            raise FeedUsageError(str(exc)) from None
        if "number" not in header or "deactivated_at" not in header:
            raise FeedUsageError("the header must be: number,deactivated_at")
        rejects = RejectsFile(rejects_path(path), resume_after=None, enabled=True)
        report.rejects_file = str(rejects.path)
        batch: list[Deactivation] = []

        async def flush() -> None:
            for org in orgs:
                async with database.session(writes=True) as session:
                    report.opted_out += await apply_deactivations(session, org, batch, ACTOR)
                    await session.commit()
            rejects.flush()
            batch.clear()
            if progress is not None:
                progress(raw.tell(), report.lines)

        try:
            for row in rows:
                report.lines += 1
                entry = _entry(row.values, path.name, row.line, rejects)
                if entry is not None:
                    batch.append(entry)
                if len(batch) >= BATCH_LINES:
                    await flush()
            await flush()
        except UnreadableFile as exc:
            raise FeedUsageError(str(exc)) from None
    report.invalid = rejects.count
    return report


def _entry(
    values: dict[str, str], file_name: str, line: int, rejects: RejectsFile
) -> Deactivation | None:
    number, when = values.get("number", ""), values.get("deactivated_at", "")
    if problem := e164_problem(number):
        rejects.add(line, {"number": problem})
        return None
    try:
        deactivated_at = parse_deactivated_at(when)
    except PydanticCustomError as exc:
        rejects.add(line, {"deactivated_at": exc.message()})
        return None
    return Deactivation(
        number=number,
        deactivated_at=deactivated_at,
        evidence={"channel": "carrier_feed", "file": file_name, "line": line, "date": when},
    )
