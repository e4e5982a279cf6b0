"""CSV import of historical consents: every row through the API's validator, good
rows written in batches through the one write path, bad rows to a rejects file.

Safe to rerun after a kill: each batch commits together with a checkpoint (the
file's SHA-256 and the last line committed), so a rerun of the same file resumes
after the checkpoint; nothing is imported twice and nothing is lost. The rejects
file is appended before each commit and trimmed back to the checkpoint on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.capture import change_of
from agentmessage.consent.changes import BatchResult, ConsentChange, Turn, record_changes
from agentmessage.consent.repository import ConsentRepository
from agentmessage.consent.schemas import parse_capture
from agentmessage.db.engine import Database, is_postgresql
from agentmessage.db.models import ImportRun, Organization
from agentmessage.files.csvfile import (
    RejectsFile,
    Row,
    UnreadableFile,
    fingerprint,
    open_text,
    read_rows,
    rejects_path,
)
from agentmessage.kit.clock import utcnow
from agentmessage.kit.collector import settle_for_batches
from agentmessage.kit.errors import ValidationFailed
from agentmessage.orgs.plans import PLANS

BATCH_ROWS = 1000
# Batches in flight at once on PostgreSQL (see _Writes).
PIPELINE_DEPTH = 2
# From this size on (about 15,000 rows), rows are read and validated in a second
# process; below it, starting one (about a second) would cost more than it saves.
PROCESS_FROM_BYTES = 4 << 20
EVIDENCE_COLUMNS = (
    "captured_at",
    "consent_method",
    "agreement_text",
    "ip_address",
    "user_agent",
    "form_url",
)
REQUIRED = ("contact_number", "opted_in", "captured_at", "consent_method", "agreement_text")
KNOWN = (*REQUIRED, "ip_address", "user_agent", "form_url", "phone_number", "phone_number_id")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


class ImportUsageError(Exception):
    """Bad usage or an unusable file: nothing was imported (exit 2)."""


@dataclass(slots=True)
class ImportReport:
    file: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0  # rows already committed by an earlier, interrupted run
    resumed_after_line: int = 0
    dry_run: bool = False
    rejects_file: str | None = None
    unknown_columns: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped_already_imported": self.skipped,
            "resumed_after_line": self.resumed_after_line,
            "dry_run": self.dry_run,
            "rejects_file": self.rejects_file,
            "unknown_columns": self.unknown_columns,
        }


Progress = Callable[[int, int], None]
"""Called with (bytes read so far, rows done so far) after each batch."""


async def import_consents(
    database: Database,
    *,
    org_id: uuid.UUID,
    path: Path,
    phone_number_id: uuid.UUID | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import ``path`` into the organization. Raises ImportUsageError (exit 2) for an
    unknown organization or phone number, a missing column or an unreadable file."""
    org_scope = OrgScope(org_id)
    try:
        digest = fingerprint(path)
    except UnreadableFile as exc:
        raise ImportUsageError(str(exc)) from None
    async with database.session(writes=False) as session:
        org = await session.get(Organization, org_id)
        if org is None:
            raise ImportUsageError("organization not found")
        numbers = {
            n: i for i, n in (await ConsentRepository(session).sender_numbers(org_scope)).items()
        }
        if phone_number_id is not None and phone_number_id not in numbers.values():
            raise ImportUsageError("--phone-number-id is not a sender number of this organization")
        checkpoint = None if dry_run else await session.get(ImportRun, (org_id, digest))
    attested = PLANS[org.plan].attested_capture
    try:
        text, raw = open_text(path)
    except UnreadableFile as exc:
        raise ImportUsageError(str(exc)) from None
    report = ImportReport(file=str(path), dry_run=dry_run)
    with text:
        try:
            header, rows = read_rows(text)
        except UnreadableFile as exc:
            raise ImportUsageError(str(exc)) from None
        missing = [c for c in REQUIRED if c not in header]
        if "phone_number" not in header and "phone_number_id" not in header and not phone_number_id:
            missing.append("phone_number or phone_number_id (or --phone-number-id)")
        if missing:
            raise ImportUsageError(f"missing column(s): {', '.join(missing)}")
        report.unknown_columns = [c for c in header if c and c not in KNOWN]
        resume_after = checkpoint.committed_line if checkpoint else 0
        report.resumed_after_line = resume_after
        rejects = RejectsFile(rejects_path(path), resume_after=resume_after, enabled=not dry_run)
        report.rejects_file = None if dry_run else str(rejects.path)
        report.accepted = checkpoint.accepted if checkpoint else 0
        # A dry run is one transaction rolled back at the end, so that later rows
        # see what earlier ones would have done; a real run commits every batch.
        dry_session = database.session(writes=True) if dry_run else None
        settings = _Validation(
            numbers, phone_number_id, attested, path.name, resume_after, BATCH_ROWS
        )
        batches = (
            _ValidatorProcess(path, settings)
            if _is_large(path)
            else _ValidatorTask(_prepared(rows, settings, raw.tell))
        )

        async def commit(prepared: _Prepared, result: BatchResult, session: AsyncSession) -> None:
            """The batch's rejects, counts and checkpoint, then its commit: in file order."""
            report.skipped += prepared.skipped
            report.rows += prepared.rows
            for line, details in prepared.rejected:
                rejects.add(line, details)
            for rejection in result.rejected:
                # A stale opt-in or opt-out names evidence.captured_at: the file's column.
                rejects.add(rejection.index, _column_names(rejection.details))
            report.accepted += len(result.accepted)
            rejects.flush()
            if not dry_run:
                await _checkpoint(
                    session,
                    org_id,
                    digest,
                    path.name,
                    prepared.last_line,
                    accepted=report.accepted,
                    rejected=rejects.count,
                )
                await session.commit()
            if progress is not None:
                progress(prepared.bytes_read, report.rows)

        writes = _Writes(
            lambda: dry_session or database.session(writes=True),
            lambda session, prepared, turn: record_changes(
                session, org_scope, prepared.changes, turn=turn
            ),
            commit,
            # One transaction at a time on SQLite (it has one writer) and in a dry run.
            depth=PIPELINE_DEPTH if is_postgresql(database.engine) and not dry_run else 1,
            closes_sessions=not dry_run,
        )
        unreadable: UnreadableFile | None = None
        try:
            try:
                while (prepared := await batches.next()) is not None:
                    await writes.submit(prepared)
            except UnreadableFile as exc:
                unreadable = exc  # found mid-file: what was read before it still commits
            await writes.drain()
        finally:
            await writes.cancel()
            await batches.close()
            if dry_session is not None:
                await dry_session.rollback()
                await dry_session.close()
        if unreadable is not None:
            last = writes.last_line
            kept = f"lines up to {last} were imported" if last else "nothing was imported"
            raise ImportUsageError(f"{unreadable}; {kept}")
        if not dry_run:
            async with database.session(writes=True) as session:
                await _checkpoint(
                    session,
                    org_id,
                    digest,
                    path.name,
                    None,
                    accepted=report.accepted,
                    rejected=rejects.count,
                    done=True,
                )
                await session.commit()
    report.rejected = rejects.count
    return report


async def _checkpoint(
    session: AsyncSession,
    org_id: uuid.UUID,
    digest: str,
    name: str,
    line: int | None,
    *,
    accepted: int,
    rejected: int,
    done: bool = False,
) -> None:
    """Record how far the file got, in the batch's own transaction: one statement
    (it runs between two batches' commits, so it is kept short)."""
    now = utcnow()
    statement = _checkpoint_statement(session.get_bind().dialect.name, line is not None, done)
    await session.execute(
        statement,
        {
            "org_id": org_id,
            "file_sha256": digest,
            "file_name": name[:500],
            "committed_line": line or 1,
            "accepted": accepted,
            "rejected": rejected,
            "started_at": now,
            "updated_at": now,
            "completed_at": now if done else None,
        },
    )


@cache
def _checkpoint_statement(dialect: str, moves_line: bool, done: bool) -> Any:
    """INSERT the run, or UPDATE its counts (and line, and completion): built once."""
    module = postgresql if dialect == "postgresql" else sqlite
    table = cast(Table, ImportRun.__table__)
    insert = module.insert(table).values({c.name: bindparam(c.name) for c in table.c})
    changes = {name: insert.excluded[name] for name in ("accepted", "rejected", "updated_at")}
    if moves_line:
        changes["committed_line"] = insert.excluded.committed_line
    if done:
        changes["completed_at"] = insert.excluded.completed_at
    return insert.on_conflict_do_update(index_elements=["org_id", "file_sha256"], set_=changes)


@dataclass(frozen=True, slots=True)
class _Validation:
    """What validating a row needs: plain data, so that it can go to another process."""

    numbers: dict[str, uuid.UUID]
    default_number: uuid.UUID | None
    attested: bool
    file_name: str
    resume_after: int
    batch_rows: int
    # The organization's sender number ids, each to itself (see _change).
    ids: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids.update((i, i) for i in self.numbers.values())


@dataclass(slots=True)
class _Prepared:
    """One batch of rows, validated: its changes and its rejects, in line order."""

    rows: int
    last_line: int
    changes: list[tuple[int, ConsentChange]]
    rejected: list[tuple[int, dict[str, str]]]
    bytes_read: int
    skipped: int


class _Writes:
    """Batches written ``depth`` at a time, each in its own transaction, committed
    one after the other in file order.

    On PostgreSQL a batch's records, events and leaf hashes are computed while
    the batch before it is in the database. It writes its records once that one
    has written its own and locked the proof log's head (``record_changes``'s
    turn: from there on that batch waits for nobody), so the two batches' other
    statements run side by side; it locks the head itself once that one has
    committed, and commits, with its checkpoint, once that one is done. So a batch
    only ever waits for the one before it, never the reverse, and no wait can
    close a circle. If a batch fails, the one after it rolls back unsaved: the
    checkpoint never passes a batch that is not stored.
    """

    def __init__(
        self,
        new_session: Callable[[], AsyncSession],
        write: Callable[[AsyncSession, _Prepared, Turn], Awaitable[BatchResult]],
        commit: Callable[[_Prepared, BatchResult, AsyncSession], Awaitable[None]],
        *,
        depth: int,
        closes_sessions: bool,
    ) -> None:
        self._new_session = new_session
        self._write = write
        self._commit = commit
        self._depth = depth
        self._closes_sessions = closes_sessions
        self._in_flight: deque[tuple[asyncio.Task[None], asyncio.Event]] = deque()
        self.last_line = 0  # the last line of the last batch committed

    async def submit(self, prepared: _Prepared) -> None:
        """Start writing ``prepared``; first waits for the oldest batch if ``depth``
        are in flight (and raises its error, if it failed)."""
        if len(self._in_flight) >= self._depth:
            await self._in_flight.popleft()[0]
        previous = self._in_flight[-1] if self._in_flight else None
        written = asyncio.Event()
        task = asyncio.create_task(self._run(prepared, previous, written))
        self._in_flight.append((task, written))

    async def drain(self) -> None:
        while self._in_flight:
            await self._in_flight.popleft()[0]

    async def cancel(self) -> None:
        """Stop whatever is still in flight (after an error): it rolls back."""
        tasks = [task for task, _ in self._in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()

    async def _run(
        self,
        prepared: _Prepared,
        previous: tuple[asyncio.Task[None], asyncio.Event] | None,
        written: asyncio.Event,
    ) -> None:
        session = self._new_session()
        try:
            try:
                result = await self._write(session, prepared, _Turn(previous, written))
            finally:
                written.set()  # also on failure: the next batch must not wait forever
            if previous is not None:
                # Raises the earlier batch's error: this one then rolls back unsaved.
                await asyncio.shield(previous[0])
            await self._commit(prepared, result, session)
            self.last_line = prepared.last_line
        finally:
            if self._closes_sessions:
                await session.close()


class _Turn:
    """A batch's turn: it writes once the batch ahead has passed its turn on."""

    def __init__(
        self, previous: tuple[asyncio.Task[None], asyncio.Event] | None, written: asyncio.Event
    ) -> None:
        self._previous = previous[1] if previous else None
        self._written = written

    async def take(self) -> None:
        if self._previous is not None:
            await self._previous.wait()

    def pass_on(self) -> None:
        self._written.set()


def _is_large(path: Path) -> bool:
    return path.stat().st_size >= PROCESS_FROM_BYTES


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepared(
    rows: Iterator[Row], settings: _Validation, bytes_read: Callable[[], int]
) -> Iterator[_Prepared]:
    """The file's rows, validated batch by batch (rows up to ``resume_after`` skipped)."""
    for batch in _batches(rows, settings.batch_rows):
        rejected: list[tuple[int, dict[str, str]]] = []
        changes: list[tuple[int, ConsentChange]] = []
        todo = [row for row in batch if row.line > settings.resume_after]
        for row in todo:
            change = _change(row, settings, rejected)
            if change is not None:
                changes.append((row.line, change))
        yield _Prepared(
            len(batch), batch[-1].line, changes, rejected, bytes_read(), len(batch) - len(todo)
        )


class _ValidatorTask:
    """Validation in this process, in a task: the next batches are checked while
    the database writes this one (the writes mostly wait on the server)."""

    def __init__(self, batches: Iterator[_Prepared]) -> None:
        self._queue: asyncio.Queue[_Prepared | BaseException | None] = asyncio.Queue(maxsize=2)
        self._task = asyncio.create_task(self._run(batches))

    async def _run(self, batches: Iterator[_Prepared]) -> None:
        try:
            for prepared in batches:
                await self._queue.put(prepared)
                await asyncio.sleep(0)  # let the writer take it while the next is checked
        except BaseException as exc:  # handed to the writer, which raises it
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    async def next(self) -> _Prepared | None:
        prepared = await self._queue.get()
        if isinstance(prepared, BaseException):
            raise prepared
        return prepared

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _ValidatorProcess:
    """Reading and validation in a second process, for large files: on a machine
    with two cores they no longer take turns with the write path for one.

    The child reads the file itself and sends validated batches through a pipe,
    one batch ahead of the writer (a send blocks until the writer reads), so
    memory stays flat. Only the writing end goes to the child: if this process
    dies, the child's next send fails and it exits (no orphan is left behind).
    """

    def __init__(self, path: Path, settings: _Validation) -> None:
        context = multiprocessing.get_context("spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_validate_in_child,
            args=(str(path), settings, sender),
            name="agentmessage-import-validator",
            daemon=True,
        )
        self._process.start()
        sender.close()  # the child's end: EOF here once the child is gone

    async def next(self) -> _Prepared | None:
        try:
            item = await asyncio.to_thread(self._receiver.recv)
        except EOFError:
            await asyncio.to_thread(self._process.join, 5)
            raise RuntimeError(
                f"the validating process stopped (exit code {self._process.exitcode})"
            ) from None
        if isinstance(item, BaseException):
            raise item
        prepared: _Prepared | None = item
        return prepared

    async def close(self) -> None:
        self._receiver.close()  # a child blocked in a send gets a broken pipe
        if self._process.is_alive():
            self._process.terminate()
        await asyncio.to_thread(self._process.join, 5)


def _validate_in_child(path: str, settings: _Validation, out: Connection) -> None:
    """The child's work: every batch of the file, then None (or the exception)."""
    settle_for_batches()
    try:
        try:
            text, raw = open_text(Path(path))
            with text:
                _header, rows = read_rows(text)
                for prepared in _prepared(rows, settings, raw.tell):
                    out.send(prepared)
        except UnreadableFile as exc:  # the parent raises it, as it would its own
            out.send(exc)
            return
        except (BrokenPipeError, KeyboardInterrupt):
            return  # the parent is gone or stopping: nobody to tell
        except Exception as exc:
            out.send(RuntimeError(f"validation failed: {exc!r}"))
            return
        out.send(None)
    except BrokenPipeError:
        return
    finally:
        out.close()


def _change(
    row: Row, settings: _Validation, rejects: list[tuple[int, dict[str, str]]]
) -> ConsentChange | None:
    """The row as a capture, validated by the API's own validator; None if rejected."""
    values = row.values
    if "__extra__" in values:
        extra = f"has {values['__extra__']} more field(s) than the header"
        rejects.append((row.line, {"row": extra}))
        return None
    nul = [name for name, value in values.items() if isinstance(value, str) and "\x00" in value]
    if nul:
        # PostgreSQL text cannot hold U+0000: a row with one is bad input.
        nul_reason = "must not contain the NUL character (U+0000)"
        rejects.append((row.line, dict.fromkeys(nul, nul_reason)))
        return None
    phone_number_id: Any = values.get("phone_number_id") or None
    if phone_number_id is None and values.get("phone_number"):
        phone_number_id = settings.numbers.get(values["phone_number"])
        if phone_number_id is None:
            unknown = "is not a sender number of this organization"
            rejects.append((row.line, {"phone_number": unknown}))
            return None
    if phone_number_id is None:
        phone_number_id = settings.default_number
    opted_in: Any = values.get("opted_in", "")
    if opted_in.lower() in _TRUE:
        opted_in = True
    elif opted_in.lower() in _FALSE:
        opted_in = False
    evidence = {name: values[name] for name in EVIDENCE_COLUMNS if values.get(name)}
    record = {
        "phone_number_id": str(phone_number_id) if phone_number_id else None,
        "contact_number": values.get("contact_number", ""),
        "opted_in": opted_in,
        "evidence": evidence,
    }
    try:
        capture = parse_capture(record)
    except ValidationFailed as exc:
        rejects.append((row.line, _column_names(exc.details or {})))
        return None
    if capture.opted_in and not settings.attested:
        rejects.append(
            (
                row.line,
                {
                    "opted_in": "attested opt-in capture is not in the organization's plan "
                    "(PLAN_REQUIRED)"
                },
            )
        )
        return None
    # One id object per sender number: a batch then pickles each number once.
    capture.phone_number_id = settings.ids.get(capture.phone_number_id, capture.phone_number_id)
    actor = {"type": "import", "file": settings.file_name, "line": row.line}
    return change_of(capture, actor, "import:csv")


def _column_names(details: dict[str, str]) -> dict[str, str]:
    """``evidence.ip_address`` is the ``ip_address`` column in a file."""
    return {name.removeprefix("evidence."): reason for name, reason in details.items()}
