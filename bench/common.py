"""What every benchmark needs: a scratch database of each backend, a tenant, the
real app served over HTTP on a free port, batched loading and latency summaries.

Benchmarks run as scripts (``python bench/<name>.py``) with the repository root
on ``sys.path``, so that this module and ``tests.fixtures`` import as packages.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Final, Literal

import httpx
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tests.fixtures.postgres import PostgresCluster

from agentmessage.auth.keys import SCOPES
from agentmessage.auth.service import create_key
from agentmessage.db.engine import Database, async_url, create_engine
from agentmessage.db.migrate import upgrade_to_head
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
                        "created_at", "updated_at"),
    "consent_events": ("org_id", "id", "consent_id", "type", "consent_method", "source",
                       "reason", "evidence", "actor", "occurred_at", "created_at"),
    "log_leaves": ("org_id", "leaf_index", "event_id", "consent_id", "hashes"),
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
) -> Iterator[Server]:
    """``agentmessage serve`` on a free port of 127.0.0.1, once it answers.

    The server runs in a process of its own (as in production, and so that its
    event loop does not share the GIL with the client that times it); its output
    goes to a log in ``workdir``. Stopped on exit, even on error.
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
        if len(self.samples_ms) < 2:
            return self.samples_ms[0]
        return statistics.quantiles(self.samples_ms, n=20, method="inclusive")[-1]


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
