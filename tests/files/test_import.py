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
from tests.fixtures.edge_values import EDGE_TIMES

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
    database, fresh_database, tmp_path, monkeypatch
):
    # The same file's sender number in two databases: a number has one organization.
    here, there = (await make_org(database), await make_org(fresh_database))
    path = write(tmp_path, MESSY)
    report_here = await import_consents(database, org_id=here.id, path=path)
    rejects_here = read_rejects(path)
    monkeypatch.setattr(importer, "PROCESS_FROM_BYTES", 0)
    copy = write(tmp_path, MESSY, "copy.csv")
    report_there = await import_consents(fresh_database, org_id=there.id, path=copy)
    assert (report_there.rows, report_there.accepted, report_there.rejected) == (12, 3, 9)
    assert report_there.as_json() | {"file": "", "rejects_file": ""} == (
        report_here.as_json() | {"file": "", "rejects_file": ""}
    )
    assert read_rejects(copy) == rejects_here
    assert await snapshot(fresh_database, there) == await snapshot(database, here) != []


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


async def test_an_interrupted_import_rerun_equals_one_clean_run(database, fresh_database, tmp_path):
    interrupted_org = await make_org(database)
    clean_org = await make_org(fresh_database)
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
    clean = await import_consents(fresh_database, org_id=clean_org.id, path=clean_path)
    assert (rerun.accepted, rerun.rejected) == (clean.accepted, clean.rejected)
    assert await snapshot(database, interrupted_org) == await snapshot(fresh_database, clean_org)
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


async def test_bad_times_and_invisible_texts_reject_their_rows_and_the_command_exits_0(
    database, org, tmp_path
):
    times = [p.values for p in EDGE_TIMES]
    # Cells are trimmed of whitespace as read; these survive it and are still blank.
    texts = ["\u200b\u200b", "\u2800\u3164", "\u115f\u1160\ufeff"]
    lines = ["contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number"]
    lines += [
        f"+1555444{3300 + i},true,{at},checkbox,Text,+15550100001"
        for i, (at, _) in enumerate(times)
    ]
    lines += [
        f"+1555444{3400 + i},true,2026-04-26T12:00:00Z,checkbox,{text},+15550100001"
        for i, text in enumerate(texts)
    ]
    lines += [
        "+15554443500,true,2026-05-01T00:00:00Z,checkbox,Text,+15550100001",
        "+15554443500,false,2026-04-01T00:00:00Z,written,Text,+15550100001",  # before it
        "+15554443501,true,1992-01-01T00:00:00Z,checkbox,Text,+15550100001",
    ]
    path = write(tmp_path, "\n".join(lines) + "\n")
    env = {
        **os.environ,
        "AGENTMESSAGE_DATABASE_URL": database.url,
        "AGENTMESSAGE_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [AGENTMESSAGE, "consents", "import", str(path), "--org", str(org.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["rejected"]) == (2, len(times) + len(texts) + 1)
    expected = [[str(n), "captured_at", reason] for n, (_, reason) in enumerate(times, start=2)]
    first_text = 2 + len(times)
    expected += [
        [str(n), "agreement_text", "must not be blank"]
        for n in range(first_text, first_text + len(texts))
    ]
    stale = (
        "is before the contact opted in at 2026-05-01T00:00:00Z; "
        "an opt-out dated before that consent cannot end it"
    )
    expected.append([str(len(lines) - 1), "captured_at", stale])
    assert read_rejects(path)[1:] == expected


def flip_flop_file(tmp_path: Path, name: str = "flips.csv") -> Path:
    """60 contacts, each opting in and out again and again (120 rows per round, six
    rounds): with batches of 120 rows, each batch holds every contact twice and
    shares them all with the batches on either side of it."""
    lines = ["contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number"]
    for i in range(720):
        contact = f"+155544{43000 + i % 60}"
        opted_in = "true" if (i // 60) % 2 == 0 else "false"
        at = f"2026-04-26T{12 + i // 60:02d}:{i % 60:02d}:00Z"
        lines.append(f"{contact},{opted_in},{at},checkbox,Text {i},+15550100001")
    return write(tmp_path, "\n".join(lines) + "\n", name)


async def proof_log_is_whole(database, org) -> bool:
    """One leaf per event, indexes 0..n-1 without a gap, the head at n."""
    from agentmessage.db.models import LogHead, LogLeaf

    async with database.session(writes=False) as session:
        events = await session.scalar(
            select(func.count()).select_from(ConsentEvent).where(ConsentEvent.org_id == org.id)
        )
        leaves = (
            await session.scalars(
                select(LogLeaf.leaf_index)
                .where(LogLeaf.org_id == org.id)
                .order_by(LogLeaf.leaf_index)
            )
        ).all()
        size = await session.scalar(select(LogHead.size).where(LogHead.org_id == org.id))
    return list(leaves) == list(range(events)) and size == events


async def test_batches_in_flight_together_keep_the_file_order(
    database, fresh_database, tmp_path, monkeypatch
):
    """On PostgreSQL two batches are written at once; batches that touch the same
    contacts still apply in file order, as in a one-at-a-time run."""
    monkeypatch.setattr(importer, "BATCH_ROWS", 120)
    together, one_by_one = await make_org(database), await make_org(fresh_database)
    report = await import_consents(database, org_id=together.id, path=flip_flop_file(tmp_path))
    monkeypatch.setattr(importer, "PIPELINE_DEPTH", 1)
    alone = await import_consents(
        fresh_database, org_id=one_by_one.id, path=flip_flop_file(tmp_path, "alone.csv")
    )
    assert (report.rows, report.accepted, report.rejected) == (720, 720, 0)
    assert (alone.accepted, alone.rejected) == (720, 0)
    history = await snapshot(database, together)
    assert history == await snapshot(fresh_database, one_by_one)
    # Each contact's twelve events in file order: in, out, in, out...
    first = "+15554443000"
    assert [r[1] for r in history if len(r) == 3 and r[0] == first] == ["opt_in", "opt_out"] * 6
    states = {r[0]: (r[1], r[3].hour, r[3].minute) for r in history if len(r) == 6}
    assert states == {f"+155544{43000 + n}": (False, 23, n) for n in range(60)}
    assert await proof_log_is_whole(database, together)


async def test_a_batch_the_database_refuses_takes_the_batch_after_it_back_too(
    database, fresh_database, org, tmp_path
):
    """Batch 2 fails inside the database while batch 3 is already being written:
    neither is kept, the checkpoint stays at batch 1, and a rerun (the fault gone)
    equals one clean run."""
    from sqlalchemy import text

    from agentmessage.db.models import ImportRun

    path = big_file(tmp_path, 3500)
    refused = "+15550001500"  # line 1502: batch 2 (lines 1002..2001)
    async with database.engine.begin() as connection:
        if database.engine.dialect.name == "postgresql":
            await connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the test'; END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON consent_records FOR EACH ROW "
                    f"WHEN (NEW.contact_number = '{refused}') EXECUTE FUNCTION refuse()"
                )
            )
        else:
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON consent_records "
                    f"WHEN NEW.contact_number = '{refused}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
    with pytest.raises(Exception, match="refused by the test"):
        await import_consents(database, org_id=org.id, path=path)
    async with database.session(writes=False) as session:
        (run,) = (await session.scalars(select(ImportRun))).all()
        records = await session.scalar(
            select(func.count()).select_from(ConsentRecord).where(ConsentRecord.org_id == org.id)
        )
    assert run.committed_line == 1001
    assert records == 1000 - len(range(0, 1000, 97)) == run.accepted
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "DROP TRIGGER refuse"
                + (" ON consent_records" if database.engine.dialect.name == "postgresql" else "")
            )
        )
    rerun = await import_consents(database, org_id=org.id, path=path)
    assert rerun.resumed_after_line == 1001
    clean_org = await make_org(fresh_database)
    clean = await import_consents(
        fresh_database, org_id=clean_org.id, path=big_file(tmp_path, 3500, "clean.csv")
    )
    assert (rerun.accepted, rerun.rejected) == (clean.accepted, clean.rejected)
    assert await snapshot(database, org) == await snapshot(fresh_database, clean_org)
    assert await proof_log_is_whole(database, org)


async def test_a_short_batch_behind_a_long_one_waits_for_its_turn(database, org, tmp_path):
    """The last batch (one row) is folded long before the 1000-row batch ahead of
    it, and names a contact of that batch: it must still write after it (were it
    to write first, each batch would wait for the other: a hang, caught here by
    the time limit)."""
    lines = ["contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number"]
    lines += [
        f"+1555{i:07d},true,2026-04-26T12:00:00Z,checkbox,Text {i},+15550100001"
        for i in range(importer.BATCH_ROWS)
    ]
    lines.append("+15550000000,false,2026-04-26T13:00:00Z,checkbox,Stop,+15550100001")
    path = write(tmp_path, "\n".join(lines) + "\n")
    report = await asyncio.wait_for(import_consents(database, org_id=org.id, path=path), 60)
    assert (report.accepted, report.rejected) == (importer.BATCH_ROWS + 1, 0)
    history = await snapshot(database, org)
    assert [r[1] for r in history if len(r) == 3 and r[0] == "+15550000000"] == [
        "opt_in",
        "opt_out",
    ]
    assert {r[0]: r[1] for r in history if len(r) == 6}["+15550000000"] is False
    assert await proof_log_is_whole(database, org)


UNCLOSED = (
    "phone_number,contact_number,opted_in,captured_at,consent_method,agreement_text\n"
    '+15550100001,+15554440002,true,2026-04-26T12:00:00Z,checkbox,"Text opened, never closed\n'
    + "".join(
        f"+15550100001,+1555444000{i},true,2026-04-26T12:00:00Z,checkbox,Text\n"
        for i in range(3, 8)
    )
)


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
async def test_a_quote_never_closed_refuses_the_file_naming_its_line(
    database, org, tmp_path, agentmessage, dry_run
):
    """Read leniently, line 2 would be one row whose agreement text holds the five
    rows after it, other contacts' numbers included."""
    path = write(tmp_path, UNCLOSED)
    done = agentmessage(
        "consents", "import", str(path), "--org", str(org.id), *(["--dry-run"] if dry_run else [])
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert (
        "agentmessage: error: line 2: the quote that opens the agreement_text field of this "
        "row is never closed, so every line after it, to the end of the file (line 7), would be "
        'read into that field; the file was refused (close the quote, or double it ("") if it '
        "is part of the text)\n"
    ) in done.stderr
    assert await snapshot(database, org) == []
    assert not path.with_name("consents.rejects.csv").exists()

    # Closed, the same file imports every row.
    path.write_text(UNCLOSED.replace("never closed\n", 'never closed"\n', 1))
    fixed = agentmessage("consents", "import", str(path), "--org", str(org.id))
    assert fixed.returncode == 0, fixed.stderr
    assert (json.loads(fixed.stdout)["rows"], json.loads(fixed.stdout)["accepted"]) == (6, 6)


async def test_a_quote_closed_irregularly_rows_later_refuses_the_file(
    database, org, tmp_path, agentmessage
):
    """The stray quote of line 3 ends at line 6's ``"Reminders"``: lines 3 to 6 would
    make one row of six fields, accepted, its agreement text holding three contacts."""
    rows = UNCLOSED.splitlines(keepends=True)
    rows[1] = rows[1].replace('"Text opened, never closed', "Text")
    rows.insert(2, rows[1].replace("0002,", "0009,").replace(",Text\n", ',"Stray quote\n'))
    rows[5] = rows[5].replace(",Text\n", ',"Reminders"\n')
    path = write(tmp_path, "".join(rows))
    done = agentmessage("consents", "import", str(path), "--org", str(org.id))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        "line 3: the quote that opens the agreement_text field of this row closes only on "
        "line 6, and irregularly (a quote followed by more text), so lines 3 to 6 would be "
        "read as one row"
    ) in done.stderr
    assert await snapshot(database, org) == []


@pytest.mark.parametrize(
    ("rows_after", "message"),
    [
        (400, "is never closed, so every line after it, to the end of the file (line 2902)"),
        # 18 characters of the field on line 2502, then 66 a line: 131,072 on line 4488.
        (3000, "is still open on line 4488, past the 131,072 characters a field may hold"),
    ],
)
async def test_a_quote_never_closed_far_down_a_long_file_imports_nothing(
    database, org, tmp_path, validation, rows_after, message
):
    """Found before the first batch: no batch before the quote is imported (the
    file, once fixed, is another file, and would import them a second time)."""
    opened = b'+15554449999,true,2026-04-26T12:00:00Z,checkbox,"Text,+15550100001\n'
    after = "+1555443{:04d},true,2026-04-26T12:00:00Z,checkbox,Text,+15550100001\n"
    path = file_with_line(
        tmp_path, 2500, opened + "".join(after.format(i) for i in range(rows_after)).encode()
    )
    with pytest.raises(ImportUsageError) as refused:
        await import_consents(database, org_id=org.id, path=path)
    assert str(refused.value).startswith(
        "line 2502: the quote that opens the agreement_text field of this row "
    )
    assert message in str(refused.value)
    assert await snapshot(database, org) == []


async def test_quoting_a_spreadsheet_accepts_is_read_as_before(database, org, tmp_path):
    """Line breaks and doubled quotes inside quotes, lenient quoting within a line,
    CR-only line ends, and a quote opening inside an unquoted field (it is text)."""
    path = write(
        tmp_path,
        "contact_number,opted_in,captured_at,consent_method,agreement_text,phone_number\r"
        '+15554443333,true,2026-04-26T12:00:00Z,checkbox,"Signed ""form"",\r\rpage 2",'
        "+15550100001\r"
        '+15554443334,true,2026-04-26T12:00:00Z,checkbox,"Said"so,+15550100001\r'
        '+15554443335,true,2026-04-26T12:00:00Z,checkbox,A 5" screen,+15550100001\r'
        '+15554443336,true,2026-04-26T12:00:00Z,checkbox,"Last\rrow",+15550100001',
    )
    report = await import_consents(database, org_id=org.id, path=path)
    assert (report.rows, report.accepted, report.rejected) == (4, 4, 0)
    texts = {r[0]: r[2]["agreement_text"] for r in await snapshot(database, org) if len(r) == 3}
    assert texts == {
        "+15554443333": 'Signed "form",\r\rpage 2',
        "+15554443334": "Saidso",
        "+15554443335": 'A 5" screen',
        "+15554443336": "Last\rrow",
    }
    assert [r[0] for r in read_rejects(path)] == ["line"]
