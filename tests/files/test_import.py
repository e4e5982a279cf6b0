"""agentmessage consents import: a messy real-world file, dry runs, interrupted runs."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agentmessage.consent.repository import ConsentRepository, ListFilters
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.files import importer
from agentmessage.files.importer import ImportUsageError, import_consents
from tests.files.conftest import make_org

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))

MESSY = (
    "\ufeffContact_Number;opted_in;captured_at;consent_method;agreement_text;ip_address;"
    "phone_number;crm_id\r\n"
    '+15554443333;true;2026-04-26T12:00:00Z;checkbox;"Reminders; reply STOP to opt out";'
    "203.0.113.42;+15550100001;a1\r\n"
    "\r\n"
    '+15554443334;YES;2026-04-26T12:00:00Z;written;"Signed form,\r\npage 2";;+15550100001;a2\r\n'
    "5554443335;true;2026-04-26T12:00:00Z;checkbox;Text;;+15550100001;a3\r\n"
    "+15554443336;maybe;2026-04-26T12:00:00Z;checkbox;Text;;+15550100001;a4\r\n"
    "+15554443337;true;last tuesday;checkbox;Text;;+15550100001;a5\r\n"
    "+15554443338;true;2026-04-26T12:00:00Z;telepathy;Text;;+15550100001;a6\r\n"
    "+15554443339;true;2026-04-26T12:00:00Z;checkbox;;;+15550100001;a7\r\n"
    "+15554443340;true;2026-04-26T12:00:00Z;checkbox;Text;999.1.1.1;+15550100001;a8\r\n"
    "+15554443341;true;2026-04-26T12:00:00Z;checkbox;Text;;+15559999999;a9\r\n"
    '+15554443342;false;2026-04-26T12:00:00Z;verbal;"Said ""stop"" on the phone";;'
    "+15550100001;a10\r\n"
    "+15554443343;true;2026-04-26T12:00:00Z;double_opt_in;Text;;+15550100001;a11\r\n"
    "+15554443344;true;2026-04-26T12:00:00Z;checkbox;Text;;+15550100001;a12;surplus\r\n"
)

EXPECTED_REJECTS = [
    ["6", "contact_number", "must be E.164"],
    ["7", "opted_in", "must be true or false"],
    ["8", "captured_at", "must be an RFC 3339 date-time such as 2026-04-26T12:00:00Z"],
    [
        "9",
        "consent_method",
        "must be one of 'checkbox', 'sms_keyword', 'written', 'verbal', 'attested', "
        "'double_opt_in' or 'hosted_form'",
    ],
    ["10", "agreement_text", "is required"],
    ["11", "ip_address", "must be a valid IP address"],
    ["12", "phone_number", "is not a sender number of this organization"],
    [
        "14",
        "consent_method",
        "double_opt_in is recorded only by this service's own flow; "
        "use POST /v1/consent/double-opt-in",
    ],
    ["15", "row", "has 1 more field(s) than the header"],
]


def write(tmp_path: Path, text: str, name: str = "consents.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def read_rejects(path: Path) -> list[list[str]]:
    with path.with_name(path.stem + ".rejects.csv").open(newline="") as handle:
        return list(csv.reader(handle))


async def snapshot(database, org) -> list[tuple]:
    """The organization's records and events, without ids and timestamps of recording."""
    async with database.session(writes=False) as session:
        records = await session.execute(
            select(
                ConsentRecord.contact_number,
                ConsentRecord.opted_in,
                ConsentRecord.opted_in_at,
                ConsentRecord.opted_out_at,
                ConsentRecord.consent_method,
                ConsentRecord.source,
            )
            .where(ConsentRecord.org_id == org.id)
            .order_by(ConsentRecord.contact_number)
        )
        events = await session.execute(
            select(ConsentRecord.contact_number, ConsentEvent.type, ConsentEvent.evidence)
            .join(ConsentRecord, ConsentRecord.id == ConsentEvent.consent_id)
            .where(ConsentEvent.org_id == org.id)
            .order_by(ConsentRecord.contact_number, ConsentEvent.id)
        )
        return [tuple(r) for r in records] + [tuple(e) for e in events]


async def test_a_messy_file_gives_exactly_the_expected_rows(database, org, tmp_path):
    path = write(tmp_path, MESSY)
    report = await import_consents(database, org_id=org.id, path=path)
    assert (report.rows, report.accepted, report.rejected) == (12, 3, 9)
    assert report.unknown_columns == ["crm_id"]
    assert read_rejects(path) == [["line", "field", "reason"], *EXPECTED_REJECTS]
    async with database.session(writes=False) as session:
        page = await ConsentRepository(session).page(org.id, ListFilters(), None, 100)
        history = {
            r.contact_number: await ConsentRepository(session).events(org.id, r.id) for r in page
        }
    state = {r.contact_number: (r.opted_in, r.consent_method) for r in page}
    assert state == {
        "+15554443333": (True, "checkbox"),
        "+15554443334": (True, "written"),
        "+15554443342": (False, "verbal"),
    }
    (event,) = history["+15554443334"]
    assert event.reason == "import:csv"
    assert event.evidence == {
        "captured_at": "2026-04-26T12:00:00Z",
        "consent_method": "written",
        "agreement_text": "Signed form,\r\npage 2",
    }
    assert event.actor == {"type": "import", "file": "consents.csv", "line": 4}
    assert history["+15554443333"][0].evidence["agreement_text"] == (
        "Reminders; reply STOP to opt out"
    )


async def test_a_dry_run_writes_nothing_and_reports_the_same(database, org, tmp_path):
    path = write(tmp_path, MESSY)
    report = await import_consents(database, org_id=org.id, path=path, dry_run=True)
    assert (report.accepted, report.rejected, report.dry_run) == (3, 9, True)
    assert not path.with_name("consents.rejects.csv").exists()
    assert await snapshot(database, org) == []


async def test_plan_gate_rejects_opt_in_rows_but_imports_opt_outs(database, tmp_path):
    starter = await make_org(database, plan="starter")
    rows = (
        "contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\n"
        "+15554443333,true,2026-04-26T12:00:00Z,checkbox,Text,+15550100001\n"
        "+15554443334,false,2026-04-26T12:00:00Z,written,Text,+15550100001\n"
    )
    path = write(tmp_path, rows)
    report = await import_consents(database, org_id=starter.id, path=path)
    assert (report.accepted, report.rejected) == (1, 1)
    assert read_rejects(path)[1][:2] == ["2", "opted_in"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("contact_number,opted_in\n+15554443333,true\n", "missing column(s): captured_at"),
        (b"contact_number,opted_in\n\xff\xfe\n", "not UTF-8"),
    ],
)
async def test_unusable_files_are_refused_before_anything_is_written(
    database, org, tmp_path, content, message
):
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ImportUsageError, match=re.escape(message)):
        await import_consents(database, org_id=org.id, path=path)
    assert await snapshot(database, org) == []


@pytest.fixture(params=["in-process", "second-process"])
def validation(request, monkeypatch) -> str:
    """Large files are read and validated in a second process: run both ways."""
    if request.param == "second-process":
        monkeypatch.setattr(importer, "PROCESS_FROM_BYTES", 0)
    return str(request.param)


def file_with_line(tmp_path: Path, good_rows: int, last: bytes) -> Path:
    good = "+1555444{:04d},true,2026-04-26T12:00:00Z,checkbox,Text,+15550100001\n"
    path = tmp_path / "long.csv"
    path.write_bytes(
        b"contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\n"
        + "".join(good.format(i) for i in range(good_rows)).encode()
        + last
    )
    return path


async def test_bytes_that_are_not_utf8_far_down_refuse_the_file_with_their_line(
    database, org, tmp_path
):
    bad = b"+15554449999,true,2026-04-26T12:00:00Z,checkbox,Caf\xe9,+15550100001\n"
    path = file_with_line(tmp_path, 2500, bad)
    with pytest.raises(ImportUsageError, match=r"^line 2502 is not UTF-8 text$"):
        await import_consents(database, org_id=org.id, path=path)
    assert await snapshot(database, org) == []


async def test_a_line_that_cannot_be_read_mid_file_stops_and_says_what_was_kept(
    database, org, tmp_path, validation
):
    # A field beyond the csv module's limit (131,072 characters) is found only
    # when the reader gets there: the batches before it are in.
    huge = "+15554449999,true,2026-04-26T12:00:00Z,checkbox,{},+15550100001\n"
    path = file_with_line(tmp_path, 2500, huge.format("x" * 200_000).encode())
    message = "line 2502: field larger than field limit (131072); lines up to 2001 were imported"
    with pytest.raises(ImportUsageError, match=re.escape(message)):
        await import_consents(database, org_id=org.id, path=path)
    assert len(await snapshot(database, org)) == 2 * 2000  # records and their events


async def test_validation_in_a_second_process_gives_the_same_database(
    database, tmp_path, monkeypatch
):
    here, there = (await make_org(database), await make_org(database))
    path = write(tmp_path, MESSY)
    report_here = await import_consents(database, org_id=here.id, path=path)
    rejects_here = read_rejects(path)
    monkeypatch.setattr(importer, "PROCESS_FROM_BYTES", 0)
    copy = write(tmp_path, MESSY, "copy.csv")
    report_there = await import_consents(database, org_id=there.id, path=copy)
    assert (report_there.rows, report_there.accepted, report_there.rejected) == (12, 3, 9)
    assert report_there.as_json() | {"file": "", "rejects_file": ""} == (
        report_here.as_json() | {"file": "", "rejects_file": ""}
    )
    assert read_rejects(copy) == rejects_here
    assert await snapshot(database, there) == await snapshot(database, here) != []


def big_file(tmp_path: Path, rows: int, name: str = "big.csv", text: str = "Text") -> Path:
    lines = ["contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number"]
    for i in range(rows):
        number = "555" if i % 97 == 0 else f"+1555{i:07d}"  # some rejects along the way
        lines.append(f"{number},true,2026-04-26T12:00:00Z,checkbox,{text} {i},+15550100001")
    return write(tmp_path, "\n".join(lines) + "\n", name)


def children_of(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.add(int(status.parent.name))
        except OSError:
            pass
    return found


def running(pid: int) -> bool:
    try:
        return "State:\tZ" not in (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False


class Interrupted(Exception):
    pass


async def test_an_interrupted_import_rerun_equals_one_clean_run(database, tmp_path):
    interrupted_org = await make_org(database, number="+15550100001")
    clean_org = await make_org(database, number="+15550100001")
    path = big_file(tmp_path, 3500)

    batches = 0

    def stop_after_two_batches(_bytes: int, _rows: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await import_consents(
            database, org_id=interrupted_org.id, path=path, progress=stop_after_two_batches
        )
    rerun = await import_consents(database, org_id=interrupted_org.id, path=path)
    assert rerun.resumed_after_line == 2001
    assert rerun.skipped == 2000

    clean_path = big_file(tmp_path / ".." / tmp_path.name, 3500, "clean.csv")
    clean = await import_consents(database, org_id=clean_org.id, path=clean_path)
    assert (rerun.accepted, rerun.rejected) == (clean.accepted, clean.rejected)
    assert await snapshot(database, interrupted_org) == await snapshot(database, clean_org)
    assert read_rejects(path) == read_rejects(clean_path)


async def test_a_killed_import_process_rerun_imports_every_row_once(database, org, tmp_path):
    """SIGKILL mid-file (no cleanup runs), then the same command again. The file is
    large enough to be validated in a second process, which must not outlive it."""
    path = big_file(tmp_path, 30_000, text="I agree to receive reminders by text. " * 4)
    assert path.stat().st_size >= importer.PROCESS_FROM_BYTES
    env = {
        **os.environ,
        "AGENTMESSAGE_DATABASE_URL": database.url,
        "AGENTMESSAGE_DATA_DIR": str(tmp_path),
    }
    command = [AGENTMESSAGE, "consents", "import", str(path), "--org", str(org.id)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    from agentmessage.db.models import ImportRun

    try:
        for _ in range(600):
            await asyncio.sleep(0.05)
            async with database.session(writes=False) as session:
                if await session.scalar(select(func.count()).select_from(ImportRun)):
                    break
        assert process.poll() is None, "the import finished before it could be killed"
        validators = children_of(process.pid)
        assert validators, "no validating process"
        process.kill()
    finally:
        process.wait(timeout=30)
    for _ in range(100):
        if not any(running(pid) for pid in validators):
            break
        await asyncio.sleep(0.1)
    assert not any(running(pid) for pid in validators), "the validating process outlived its import"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_after_line"] > 1  # it did resume, not start over
    async with database.session(writes=False) as session:
        records = await session.scalar(
            select(func.count()).select_from(ConsentRecord).where(ConsentRecord.org_id == org.id)
        )
        events = await session.scalar(
            select(func.count()).select_from(ConsentEvent).where(ConsentEvent.org_id == org.id)
        )
    rejected = len(range(0, 30_000, 97))
    assert records == events == 30_000 - rejected
    assert len(read_rejects(path)) == 1 + rejected


async def test_a_nul_character_rejects_its_row_only(database, org, tmp_path):
    """Exports from other systems sometimes carry NUL bytes; PostgreSQL text cannot
    hold them, so the row is a reject and the rest of the file imports."""
    path = write(
        tmp_path,
        "contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\n"
        "+15554443333,true,2026-04-26T12:00:00Z,checkbox,Reply STOP\x00 to stop,+15550100001\n"
        "+15554443334,true,2026-04-26T12:00:00Z,checkbox,Reply STOP to stop,+15550100001\n",
    )
    report = await import_consents(database, org_id=org.id, path=path)
    assert (report.accepted, report.rejected) == (1, 1)
    assert read_rejects(path)[1:] == [
        ["2", "agreement_text", "must not contain the NUL character (U+0000)"]
    ]
