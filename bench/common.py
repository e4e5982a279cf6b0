"""What every benchmark needs: a scratch database of each backend, a tenant, the
real app served over HTTP on a free port, batched loading and latency summaries.

Benchmarks run as scripts (``python bench/<name>.py``) with the repository root
on ``sys.path``, so that this module and ``tests.fixtures`` import as packages.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Final, Literal, cast

import httpx
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tests.fixtures.postgres import PostgresCluster

from agentmessage.auth.keys import SCOPES
from agentmessage.auth.service import create_key
from agentmessage.db.engine import Database, async_url, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.kit.ids import new_id
from agentmessage.orgs.service import create_organization, create_phone_number

Backend = Literal["sqlite", "postgresql"]
BACKENDS: Final[tuple[Backend, ...]] = ("sqlite", "postgresql")

# The highest allowance an organization can have: a benchmark measures the
# database and the app, not the rate limiter.
UNLIMITED_PER_MINUTE: Final = 10_000_000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process could still take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------
# Databases


@contextmanager
def scratch_database(backend: Backend, workdir: Path, name: str) -> Iterator[str]:
    """A new, empty database: its plain URL (``sqlite://`` or ``postgresql://``).

    SQLite is a file in ``workdir`` (the caller removes the folder); PostgreSQL is
    a throwaway cluster without fsync, stopped and deleted on exit, even on error.
    """
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    cluster = PostgresCluster(fsync=False)
    try:
        cluster.start()
        yield cluster.create_database(name)
    finally:
        cluster.stop()


@asynccontextmanager
async def migrated_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``url`` with the schema at the latest migration; disposed on exit."""
    engine = create_engine(async_url(url), pool_size=2)
    try:
        await upgrade_to_head(engine)
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the already migrated database at ``url``; disposed on exit."""
    engine = create_engine(async_url(url), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def insert_batches(
    connection: AsyncConnection,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 5_000,
) -> int:
    """Insert ``rows`` with one executemany statement per batch; how many were inserted."""
    iterator = iter(rows)
    inserted = 0
    while batch := list(islice(iterator, batch_size)):
        await connection.execute(insert(table), batch)
        inserted += len(batch)
    return inserted


# Column order of the tuples the benchmarks COPY into the tables (asyncpg).
COPY_COLUMNS: Final = {
    "consent_records": ("org_id", "id", "phone_number_id", "contact_number", "opted_in",
                        "opted_in_at", "opted_out_at", "source", "consent_method",
                        "created_at", "updated_at", "event_count", "last_leaf_hash"),
    "consent_events": ("org_id", "id", "consent_id", "type", "consent_method", "source",
                       "reason", "evidence", "actor", "occurred_at", "created_at",
                       "sequence", "previous_leaf_hash"),
    "log_leaves": ("org_id", "leaf_index", "event_id", "consent_id", "hashes"),
    "challenges": ("org_id", "id", "phone_number_id", "contact_number", "state",
                   "agreement_text", "confirmation_text", "message_id", "api_key_id",
                   "created_at", "expires_at", "resolved_at"),
}  # fmt: skip


async def copy_tables(connection: Any, tables: Mapping[str, Sequence[Any]]) -> None:
    """COPY each table's tuples (in ``COPY_COLUMNS`` order) through an asyncpg
    connection, in the caller's transaction, tables in the order given."""
    for table, records in tables.items():
        await connection.copy_records_to_table(
            table, records=list(records), columns=list(COPY_COLUMNS[table])
        )


async def analyze(engine: AsyncEngine) -> None:
    """Fresh planner statistics, as a database in steady use would have.

    On PostgreSQL VACUUM too: autovacuum would otherwise set the visibility map
    at a random moment during the measurement and change the plans' cost under it.
    """
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            # VACUUM refuses to run inside a transaction block.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("VACUUM (ANALYZE)")
        return
    async with engine.begin() as connection:
        await connection.exec_driver_sql("ANALYZE")


# ---------------------------------------------------------------------------
# A book of consent records at scale

# Weighted like a real book of contacts: mostly web checkboxes.
METHODS: Final = (
    ("checkbox", 50),
    ("sms_keyword", 15),
    ("written", 10),
    ("verbal", 8),
    ("attested", 7),
    ("double_opt_in", 6),
    ("hosted_form", 4),
)
SOURCE_OF_METHOD: Final = {"sms_keyword": "sms", "hosted_form": "hosted_form"}
OPTED_IN_SHARE: Final = 0.7
# Every loaded record gets its own updated_at slot in one year, at a random microsecond.
LOAD_START: Final = datetime(2025, 1, 1, tzinfo=UTC)
LOAD_SPAN: Final = timedelta(days=365)
# Loaded contacts are +1555 2000000 and up: other ranges stay free for live writes.
FIRST_LOADED_CONTACT: Final = 2_000_000
LOAD_ACTOR: Final = '{"type": "bench"}'
LOAD_BATCH: Final = 50_000


def loaded_contact(n: int) -> str:
    """The contact number of the ``n``-th loaded record."""
    return f"+1555{FIRST_LOADED_CONTACT + n:07d}"


def consent_rows(
    org_id: uuid.UUID,
    phones: Sequence[tuple[uuid.UUID, int]],
    count: int,
    seed: int,
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """``count`` (record, event) tuples in ``COPY_COLUMNS`` order: distinct contacts,
    distinct updated_at values, senders drawn from ``phones`` (id, weight).

    Ids are UUIDv7 in insertion order while updated_at is shuffled, so the list
    order is not the physical order, as after years of updates. Each record has
    the one event that left it in its state (no proof-log leaf: the benchmarks
    that read these never prove them, so the record's log head stays empty).
    """
    rng = random.Random(seed)
    step = LOAD_SPAN / count
    slots = rng.sample(range(count), count)
    methods = [name for name, _ in METHODS]
    method_weights = [weight for _, weight in METHODS]
    phone_ids = [phone for phone, _ in phones]
    phone_weights = [weight for _, weight in phones]
    for n, slot in enumerate(slots):
        updated_at = LOAD_START + slot * step + timedelta(microseconds=rng.randrange(1, 1_000_000))
        created_at = updated_at - timedelta(seconds=rng.randrange(0, 90 * 86_400))
        opted_in = rng.random() < OPTED_IN_SHARE
        method = rng.choices(methods, method_weights)[0]
        phone = rng.choices(phone_ids, phone_weights)[0] if len(phone_ids) > 1 else phone_ids[0]
        source = SOURCE_OF_METHOD.get(method, "api")
        record_id = new_id()
        record = (
            org_id, record_id, phone, loaded_contact(n), opted_in,
            updated_at if opted_in else created_at, None if opted_in else updated_at,
            source, method, created_at, updated_at, 0, None,
        )  # fmt: skip
        event = (
            org_id, new_id(), record_id, "opt_in" if opted_in else "opt_out",
            method if opted_in else None, source, "bench:load", None, LOAD_ACTOR,
            updated_at, updated_at, None, None,
        )  # fmt: skip
        yield record, event


async def load_consents(
    url: str,
    org_id: uuid.UUID,
    phones: Sequence[tuple[uuid.UUID, int]],
    count: int,
    *,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Load ``consent_rows`` into the migrated database at ``url``, then analyze.

    PostgreSQL by COPY, SQLite by executemany INSERTs; one transaction per batch
    of ``LOAD_BATCH`` records.
    """
    rows = consent_rows(org_id, phones, count, seed)
    batches = iter(lambda: list(islice(rows, LOAD_BATCH)), [])
    loaded = 0
    async with open_engine(url) as engine:
        if engine.dialect.name == "postgresql":
            import asyncpg

            connection = await asyncpg.connect(url)
            try:
                for batch in batches:
                    tables = {
                        "consent_records": [record for record, _ in batch],
                        "consent_events": [event for _, event in batch],
                    }
                    async with connection.transaction():
                        await copy_tables(connection, tables)
                    loaded += len(batch)
                    if progress is not None:
                        progress(f"loaded {loaded:,} of {count:,} records")
            finally:
                await connection.close()
        else:
            for batch in batches:
                async with engine.begin() as sqlite:
                    # Records first: each event's foreign key needs its record.
                    await insert_batches(sqlite, RECORDS_TABLE, map(_record_row, batch))
                    await insert_batches(sqlite, EVENTS_TABLE, map(_event_row, batch))
                loaded += len(batch)
                if progress is not None:
                    progress(f"loaded {loaded:,} of {count:,} records")
        await analyze(engine)


RECORDS_TABLE: Final = cast(Table, ConsentRecord.__table__)
EVENTS_TABLE: Final = cast(Table, ConsentEvent.__table__)


def _record_row(pair: tuple[tuple[Any, ...], tuple[Any, ...]]) -> dict[str, Any]:
    return dict(zip(COPY_COLUMNS["consent_records"], pair[0], strict=True))


def _event_row(pair: tuple[tuple[Any, ...], tuple[Any, ...]]) -> dict[str, Any]:
    row = dict(zip(COPY_COLUMNS["consent_events"], pair[1], strict=True))
    # COPY takes the JSON text; the ORM's JSON column takes the object.
    row["actor"] = json.loads(row["actor"])
    return row


# ---------------------------------------------------------------------------
# Tenants


@dataclass(frozen=True, slots=True)
class Tenant:
    org_id: uuid.UUID
    phone_number_id: uuid.UUID
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def create_tenant(
    engine: AsyncEngine,
    *,
    name: str = "Bench Org",
    plan: str = "growth",
    number: str = "+15550100000",
    rate_limit_per_minute: int = UNLIMITED_PER_MINUTE,
) -> Tenant:
    """An organization, one sender number and an all-scopes key, committed.

    Made through the services the CLI uses, so the key is hashed as in production.
    """
    database = Database(engine)
    async with database.session(writes=True) as session:
        org = await create_organization(
            session, name=name, plan=plan, rate_limit_per_minute=rate_limit_per_minute
        )
        phone = await create_phone_number(session, org_id=org.id, number=number)
        key = await create_key(session, org_id=org.id, scopes=SCOPES, name="bench")
        await session.commit()
    return Tenant(org_id=org.id, phone_number_id=phone.id, key=key.plain)


async def add_phone_number(engine: AsyncEngine, tenant: Tenant, number: str) -> uuid.UUID:
    """Another sender number of the tenant's organization, committed; its id."""
    async with Database(engine).session(writes=True) as session:
        phone = await create_phone_number(session, org_id=tenant.org_id, number=number)
        await session.commit()
    return phone.id


# ---------------------------------------------------------------------------
# Serving the app


class ServerFailed(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Server:
    """A served app: where it answers, and its process (one, as ``--workers 1``)."""

    base_url: str
    pid: int

    def reset_peak_rss(self) -> bool:
        """Measure the peak RSS from now on; False where the kernel does not allow it."""
        try:
            # "5" resets VmHWM to the current RSS (Linux 4.0+, own processes only).
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def peak_rss_bytes(self) -> int | None:
        """VmHWM: the peak RSS since start or ``reset_peak_rss``; None without /proc."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
        return None


@contextmanager
def serve_app(
    database_url: str,
    workdir: Path,
    *,
    secret_key: str = "bench-secret-key-not-for-production",
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """``agentmessage serve`` on a free port of 127.0.0.1: its base URL once it answers.

    See ``running_server``, which also gives the process id.
    """
    with running_server(
        database_url, workdir, secret_key=secret_key, startup_timeout=startup_timeout
    ) as server:
        yield server.base_url


@contextmanager
def running_server(
    database_url: str,
    workdir: Path,
    *,
    secret_key: str = "bench-secret-key-not-for-production",
    startup_timeout: float = 60.0,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """``agentmessage serve`` on a free port of 127.0.0.1, once it answers.

    The server runs in a process of its own (as in production, and so that its
    event loop does not share the GIL with the client that times it); its output
    goes to a log in ``workdir``. Stopped on exit, even on error. ``settings``
    are more of ours (``{"fast_check": "false"}``: AGENTMESSAGE_FAST_CHECK).
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Only our settings: an AGENTMESSAGE_* variable of the shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESSAGE_")}
    env |= {
        "AGENTMESSAGE_DATABASE_URL": database_url,
        "AGENTMESSAGE_SECRET_KEY": secret_key,
        "AGENTMESSAGE_DATA_DIR": str(workdir),
    }
    env |= {f"AGENTMESSAGE_{name.upper()}": value for name, value in (settings or {}).items()}
    # The interpreter running the benchmark, so the server runs the same code.
    command = [sys.executable, "-c", "from agentmessage.cli import main; main()"]
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        _wait_until_ready(process, base_url, log_path, startup_timeout)
        yield Server(base_url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerFailed(f"server exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise ServerFailed(f"server did not answer within {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 2_000) -> str:
    return path.read_text(errors="replace")[-chars:]


# ---------------------------------------------------------------------------
# Timing


def timed_get(
    client: httpx.Client, path: str, params: Mapping[str, str | int]
) -> tuple[float, Any]:
    """(milliseconds from request to parsed body, body). Anything but 200 raises."""
    started = time.perf_counter()
    response = client.get(path, params=params)
    body = response.json()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} {dict(params)} -> {response.status_code}: {body}")
    return elapsed_ms, body


@dataclass(frozen=True, slots=True)
class Latency:
    """Samples of one request, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 95)

    @property
    def p99(self) -> float:
        return percentile(self.samples_ms, 99)


def percentile(samples: Sequence[float], point: int) -> float:
    """The ``point``-th percentile (1..99) of ``samples``, interpolated between samples."""
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[point - 1]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1
) -> str:
    """A plain-text table: the first ``text_columns`` left-aligned, numbers right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# ---------------------------------------------------------------------------
# Figures: what every benchmark returns, for its own printout and RESULTS.md


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure: what, at which size, the result, and its target with
    whether it was met (``met`` None: reported for information, no target)."""

    name: str
    result: str
    size: str = ""
    detail: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        if self.met is None:
            return ""
        return "met" if self.met else "MISSED"


class PartialFailure(RuntimeError):
    """Some parts of a benchmark (backends) failed: the figures of the others, and
    the tracebacks of those that failed."""

    def __init__(self, figures: list[Figure], errors: list[str]) -> None:
        super().__init__(f"{len(errors)} part(s) failed")
        self.figures = figures
        self.errors = errors


def run_backends(
    backends: Sequence[Backend], run_one: Callable[[Backend], list[Figure]]
) -> list[Figure]:
    """The figures of every backend; one failing does not stop the others, and
    PartialFailure at the end carries what the others measured."""
    figures: list[Figure] = []
    errors: list[str] = []
    for backend in backends:
        try:
            figures.extend(run_one(backend))
        except Exception:
            errors.append(f"{backend}:\n{traceback.format_exc()}")
            print(errors[-1], file=sys.stderr, flush=True)
    if errors:
        raise PartialFailure(figures, errors)
    return figures


def main_per_backend(
    backends: Sequence[Backend],
    measure: Callable[[Backend], list[Figure]],
    title: Callable[[Backend], str],
) -> int:
    """A benchmark run on its own: each backend's figures as a table under its
    title; one failing does not stop the others. The exit status: 1 if any failed."""
    failed: list[Backend] = []
    for backend in backends:
        try:
            rows = measure(backend)
        except Exception:
            traceback.print_exc()
            print(f"{backend}: failed, see above", file=sys.stderr, flush=True)
            failed.append(backend)
            continue
        print(f"\n{title(backend)}\n")
        print(figures_table(rows))
    if failed:
        print(f"errors on: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


FIGURE_HEADERS: Final = ("figure", "size", "result", "detail", "target", "verdict")


def figure_cells(figure: Figure) -> list[str]:
    return [figure.name, figure.size, figure.result, figure.detail, figure.target, figure.verdict]


def figures_table(figures: Sequence[Figure]) -> str:
    """The figures as a plain-text table, for a benchmark run on its own."""
    rows = [figure_cells(figure) for figure in figures]
    return format_table(FIGURE_HEADERS, rows, text_columns=len(FIGURE_HEADERS))


# ---------------------------------------------------------------------------
# Throughput under wrk (127.0.0.1 only, bounded in time)

WRK_THREADS: Final = 2
WRK_CONNECTIONS: Final = 64
# A request slower than this counts as a wrk timeout, which fails the run.
WRK_TIMEOUT_S: Final = 10


class WrkFailed(RuntimeError):
    """wrk did not run, or some answers were errors (status >= 400, socket errors)."""


@dataclass(frozen=True, slots=True)
class WrkRun:
    path: str
    rate: float  # requests/s
    requests: int  # answered within the run
    p50_ms: float
    p99_ms: float


def wrk(
    base_url: str,
    path: str,
    seconds: int,
    *,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    connections: int = WRK_CONNECTIONS,
) -> WrkRun:
    """One ``wrk`` run of ``seconds`` against ``base_url + path``.

    WrkFailed if wrk fails or reports any answer of status 400 and above (its
    "Non-2xx or 3xx responses", which counts those), a socket error or a timeout.
    """
    if not base_url.startswith("http://127.0.0.1:"):
        raise WrkFailed(f"wrk loads 127.0.0.1 only, not {base_url}")
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT_S}s", "--latency",
    ]  # fmt: skip
    if script is not None:
        command += ["-s", str(script)]
    if script_args:
        command += [base_url + path, "--", *script_args]
    else:
        command += [base_url + path]
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WrkFailed(f"wrk {path}: {exc}") from exc
    out = completed.stdout
    if completed.returncode != 0 or completed.stderr.strip():
        raise WrkFailed(
            f"wrk {path} exited with {completed.returncode}:\n{completed.stderr}\n{out}"
        )
    problems = []
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        problems.append(f"{match.group(1)} answers with a status >= 400")
    if (match := re.search(r"Socket errors: (.*)", out)) and re.search(r"[1-9]", match.group(1)):
        problems.append(f"socket errors ({match.group(1)})")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in ", out)
    if rate is None or requests is None or int(requests.group(1)) == 0:
        problems.append("no requests answered")
    if problems:
        raise WrkFailed(f"wrk {path}: " + "; ".join(problems) + f"\n{out}")
    assert rate is not None and requests is not None
    return WrkRun(
        path=path,
        rate=float(rate.group(1)),
        requests=int(requests.group(1)),
        p50_ms=_wrk_latency(out, "50%"),
        p99_ms=_wrk_latency(out, "99%"),
    )


_WRK_UNITS_MS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _wrk_latency(out: str, point: str) -> float:
    match = re.search(rf"^\s+{point}\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)
    if match is None:
        raise WrkFailed(f"wrk: no {point} latency in its output:\n{out}")
    return float(match.group(1)) * _WRK_UNITS_MS[match.group(2)]


@dataclass(frozen=True, slots=True)
class WrkLoad:
    """A loaded wrk run: its name, the URL's path, its Lua script (None: a plain
    GET) and what gives the script its arguments, anew for every run."""

    name: str
    path: str
    script: Path | None = None
    script_args: Callable[[], Sequence[str]] | None = None

    def run(self, base_url: str, seconds: int) -> WrkRun:
        arguments = self.script_args() if self.script_args is not None else ()
        return wrk(base_url, self.path, seconds, script=self.script, script_args=arguments)


@dataclass(frozen=True, slots=True)
class AgainstHealthz:
    """A loaded run between two runs of ``/healthz`` on the same server."""

    load: WrkLoad
    run: WrkRun
    healthz_before: float
    healthz_after: float

    @property
    def healthz(self) -> float:
        return (self.healthz_before + self.healthz_after) / 2

    @property
    def ratio(self) -> float:
        return self.run.rate / self.healthz


def wrk_against_healthz(
    base_url: str,
    loads: Sequence[WrkLoad],
    seconds: int,
    *,
    after_each: Callable[[WrkLoad, WrkRun], None] | None = None,
) -> list[AgainstHealthz]:
    """Each load under wrk, with ``/healthz`` measured before and after it (the
    run after one load is the run before the next), after one warm-up of each.

    The machine's speed drifts (other tenants, CPU boost): a ratio to the mean of
    the neighbouring healthz runs compares like with like. ``after_each`` checks
    what each run of a load did (rows written), warm-ups included, before the
    next run starts; it should wait for the requests still in flight when wrk
    stopped, so that they do not weigh on the next run.
    """
    warmup = min(seconds, 3)
    wrk(base_url, "/healthz", warmup)
    for load in loads:
        run = load.run(base_url, warmup)
        if after_each is not None:
            after_each(load, run)
    before = wrk(base_url, "/healthz", seconds)
    results = []
    for load in loads:
        run = load.run(base_url, seconds)
        if after_each is not None:
            after_each(load, run)
        after = wrk(base_url, "/healthz", seconds)
        results.append(AgainstHealthz(load, run, before.rate, after.rate))
        before = after
    return results
