"""Bulk capture throughput: ``POST /v1/consent/bulk`` against raw batched INSERTs.

For each backend, on one fresh database in one run: records per second through the
API (1000-record calls of fresh contacts over real HTTP, one client, one call at a
time) and the raw rate of inserting the same number of other fresh contacts' rows
into the same tables with batched Core INSERTs, without the service. API calls and
raw batches alternate (API first in even rounds, raw first in odd ones), so both
sides meet the same table sizes, WAL checkpoints and caches. Target: the API reaches
at least 50% of the raw rate. N concurrent clients are shown for information.

    .venv/bin/python bench/bulk.py [--records N] [--clients N] [--backend NAME]
                                   [--stale-statistics]

Exits non-zero on an error (a call not answered 200 with every record accepted, row
counts that do not add up), not on a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import gc
import json
import random
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from typing import Any, Final, cast

import httpx
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentmessage.db.engine import SQLITE_IMMEDIATE
from agentmessage.db.models import ApiKey, ConsentEvent, ConsentRecord
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
from bench.common import (
    BACKENDS,
    Backend,
    Figure,
    Latency,
    Server,
    Tenant,
    analyze,
    create_tenant,
    format_table,
    insert_batches,
    migrated_engine,
    run_backends,
    running_server,
    scratch_database,
)

BULK_PATH: Final = "/v1/consent/bulk"
BATCH: Final = 1000  # records per API call and rows per raw INSERT: the bulk maximum
TARGET: Final = 0.5
# Far above a healthy call; a hung server fails the run instead of stalling it.
CALL_TIMEOUT: Final = 120.0

RECORDS_TABLE: Final = cast(Table, ConsentRecord.__table__)
EVENTS_TABLE: Final = cast(Table, ConsentEvent.__table__)

# Evidence as web sign-up forms send it: about 150 characters of agreement text.
AGREEMENTS: Final = (
    "By checking this box you agree to receive recurring appointment reminders from "
    "Acme Dental at the number provided. Msg & data rates may apply. Reply STOP to opt out.",
    "Yes, text me order updates and delivery notifications from Northwind Goods. Message "
    "frequency varies. Msg & data rates may apply. Reply HELP for help, STOP to cancel.",
    "I agree to receive account alerts and security codes by SMS from Contoso Bank at this "
    "number. Up to 5 msgs/month. Msg & data rates may apply. Reply STOP to unsubscribe.",
)
USER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
)
FORM_URLS: Final = (
    "https://www.acmedental.example/book?utm_source=google&utm_medium=cpc",
    "https://shop.northwind.example/checkout/confirm",
    "https://contoso.example/account/notifications",
)
IPV6_SHARE: Final = 0.2
CAPTURED_WITHIN: Final = timedelta(days=30)


class BenchFailed(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# Records


def captures(
    tenant: Tenant, contacts: Iterator[int], number: int, rng: random.Random
) -> list[dict[str, Any]]:
    """``number`` bulk records (JSON shape), opt-ins of contacts never seen before."""
    now = utcnow()
    records = []
    for _ in range(number):
        captured_at = now - timedelta(seconds=rng.uniform(60, CAPTURED_WITHIN.total_seconds()))
        if rng.random() < IPV6_SHARE:
            ip = f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
        else:
            ip = f"{rng.choice((198, 203))}.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        records.append(
            {
                "phone_number_id": str(tenant.phone_number_id),
                # +1 555 numbers are "possible" to libphonenumber: room for 10 million.
                "contact_number": f"+1555{next(contacts):07d}",
                "opted_in": True,
                "evidence": {
                    "captured_at": captured_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "consent_method": "checkbox",
                    "agreement_text": rng.choice(AGREEMENTS),
                    "ip_address": ip,
                    "user_agent": rng.choice(USER_AGENTS),
                    "form_url": rng.choice(FORM_URLS),
                },
            }
        )
    return records


@dataclass(frozen=True, slots=True)
class RawBatch:
    records: list[dict[str, Any]]
    events: list[dict[str, Any]]


def raw_batch(tenant: Tenant, actor: dict[str, str], batch: Sequence[dict[str, Any]]) -> RawBatch:
    """The rows the API writes for these records: one consent record (created, opted
    in) and one opt-in event with the evidence exactly as received, per record."""
    now = utcnow()
    records, events = [], []
    for capture in batch:
        evidence = capture["evidence"]
        captured_at = datetime.fromisoformat(evidence["captured_at"])
        record_id = new_id()
        records.append(
            {
                "org_id": tenant.org_id,
                "id": record_id,
                "phone_number_id": tenant.phone_number_id,
                "contact_number": capture["contact_number"],
                "opted_in": True,
                "opted_in_at": captured_at,
                "opted_out_at": None,
                "source": "api",
                "consent_method": evidence["consent_method"],
                "created_at": now,
                "updated_at": now,
            }
        )
        events.append(
            {
                "org_id": tenant.org_id,
                "id": new_id(),
                "consent_id": record_id,
                "type": "opt_in",
                "consent_method": evidence["consent_method"],
                "source": "api",
                "reason": "api:capture",
                "evidence": evidence,
                "actor": actor,
                "occurred_at": captured_at,
                "created_at": now,
            }
        )
    return RawBatch(records, events)


def chunked(items: Sequence[dict[str, Any]]) -> list[Sequence[dict[str, Any]]]:
    return [items[start : start + BATCH] for start in range(0, len(items), BATCH)]


def encode(batch: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"records": list(batch)}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------
# The two sides
#
# API: the wall time of one POST /v1/consent/bulk of 1000 records, from sending
# the already encoded body to the parsed answer. It holds everything a client
# pays for: loopback HTTP, uvicorn, the middleware, authentication, the rate
# limiter, parsing the ~0.6 MB JSON body, validating each record (pydantic,
# libphonenumber, IP, URL), the plan gate, the service (sender-number check,
# locking read of the contacts, INSERT ... ON CONFLICT DO NOTHING RETURNING of
# the records, INSERT of the events), the commit and the response.
#
# Raw: the wall time of one transaction (BEGIN, IMMEDIATE on SQLite as the app's
# write sessions; COMMIT) holding one executemany INSERT of 1000 consent_records
# rows and one of 1000 consent_events rows, through the same SQLAlchemy Core,
# driver and engine settings as the app, with the same columns and the same
# evidence JSON. The rows (ids, timestamps, parsed captured_at) are built before
# the clock starts. It runs in this process: no HTTP, no auth, no JSON parsing,
# no validation, no reads. That is the floor the service's writes cannot beat.
#
# This process runs the client of one side and the inserts of the other, never
# both at once; the server is a process of its own.


async def post_bulk(client: httpx.AsyncClient, body: bytes, expected: int) -> float:
    """Milliseconds of one bulk call; BenchFailed unless every record was accepted."""
    started = time.perf_counter()
    response = await client.post(
        BULK_PATH, content=body, headers={"Content-Type": "application/json"}
    )
    answer = response.json()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or answer.get("accepted") != expected:
        raise BenchFailed(f"POST {BULK_PATH} -> {response.status_code}: {str(answer)[:500]}")
    return elapsed_ms


async def insert_raw(writer: AsyncEngine, batch: RawBatch) -> float:
    """Milliseconds of one raw transaction of a batch's records and events."""
    started = time.perf_counter()
    async with writer.begin() as connection:
        # Records first: each event's foreign key needs its record.
        await insert_batches(connection, RECORDS_TABLE, batch.records, batch_size=BATCH)
        await insert_batches(connection, EVENTS_TABLE, batch.events, batch_size=BATCH)
    return (time.perf_counter() - started) * 1000


# ---------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True, slots=True)
class Result:
    backend: Backend
    records: int
    api: Latency  # per call
    raw: Latency  # per batch
    peak_rss_bytes: int | None
    concurrent_rate: float | None

    @property
    def api_rate(self) -> float:
        return self.records / (sum(self.api.samples_ms) / 1000)

    @property
    def raw_rate(self) -> float:
        return self.records / (sum(self.raw.samples_ms) / 1000)

    @property
    def ratio(self) -> float:
        return self.api_rate / self.raw_rate


async def prepare(url: str) -> tuple[Tenant, dict[str, str]]:
    """Migrate, create the tenant; the actor its key writes into history events."""
    async with migrated_engine(url) as engine:
        tenant = await create_tenant(engine)
        async with engine.connect() as connection:
            key_id = await connection.scalar(
                select(ApiKey.id).where(ApiKey.org_id == tenant.org_id)
            )
    # As Caller.actor has it.
    return tenant, {"type": "api_key", "id": str(key_id)}


@dataclass(frozen=True, slots=True)
class Workload:
    """Everything sent or inserted, built before any clock starts; warm-ups first."""

    api_bodies: list[bytes]
    raw_batches: list[RawBatch]
    concurrent_bodies: list[bytes]

    @property
    def records(self) -> int:
        """How many records the run writes, warm-ups included."""
        calls = len(self.api_bodies) + len(self.raw_batches) + len(self.concurrent_bodies)
        return calls * BATCH


def build_workload(tenant: Tenant, actor: dict[str, str], args: argparse.Namespace) -> Workload:
    rng = random.Random(args.seed)
    contacts = count()  # one sequence: every record of the run is a fresh contact

    def bodies(number: int) -> list[bytes]:
        return [encode(batch) for batch in chunked(captures(tenant, contacts, number, rng))]

    return Workload(
        api_bodies=bodies(BATCH + args.records),
        raw_batches=[
            raw_batch(tenant, actor, batch)
            for batch in chunked(captures(tenant, contacts, BATCH + args.records, rng))
        ],
        concurrent_bodies=bodies(args.records) if args.clients > 1 else [],
    )


async def measure(
    backend: Backend,
    url: str,
    server: Server,
    tenant: Tenant,
    workload: Workload,
    args: argparse.Namespace,
) -> Result:
    async with (
        migrated_engine(url) as engine,
        httpx.AsyncClient(
            base_url=server.base_url, headers=tenant.headers, timeout=CALL_TIMEOUT
        ) as client,
    ):
        writer = engine.execution_options(**{SQLITE_IMMEDIATE: True})
        (api_warmup, *api_bodies) = workload.api_bodies
        (raw_warmup, *raw_batches) = workload.raw_batches
        await post_bulk(client, api_warmup, BATCH)
        await insert_raw(writer, raw_warmup)
        if not args.stale_statistics:
            # A live database has planner statistics (autovacuum analyzes within a
            # minute); this one was created seconds ago. Without them PostgreSQL
            # reads the contacts through the wrong index, in time growing with
            # the table, and the API would be measured on a plan it never meets.
            await analyze(engine)
        if not server.reset_peak_rss():
            progress(f"{backend}: cannot reset the server's peak RSS; it includes startup")

        api_ms: list[float] = []
        raw_ms: list[float] = []
        for round_, (body, batch) in enumerate(zip(api_bodies, raw_batches, strict=True)):
            if round_ % 2 == 0:
                api_ms.append(await post_bulk(client, body, BATCH))
                raw_ms.append(await insert_raw(writer, batch))
            else:
                raw_ms.append(await insert_raw(writer, batch))
                api_ms.append(await post_bulk(client, body, BATCH))
        peak_rss = server.peak_rss_bytes()

        concurrent_rate = None
        if workload.concurrent_bodies:
            concurrent_rate = await concurrent_calls(
                server, tenant, workload.concurrent_bodies, args
            )
        await check_counts(engine, tenant, workload.records)

    return Result(
        backend,
        args.records,
        Latency(tuple(api_ms)),
        Latency(tuple(raw_ms)),
        peak_rss,
        concurrent_rate,
    )


async def concurrent_calls(
    server: Server, tenant: Tenant, bodies: Sequence[bytes], args: argparse.Namespace
) -> float:
    """Records per second with ``args.clients`` clients, each one call at a time."""
    queue = list(reversed(bodies))

    async def client_loop() -> None:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=tenant.headers, timeout=CALL_TIMEOUT
        ) as client:
            while queue:
                await post_bulk(client, queue.pop(), BATCH)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(args.clients):
            group.create_task(client_loop())
    return len(bodies) * BATCH / (time.perf_counter() - started)


async def check_counts(engine: AsyncEngine, tenant: Tenant, expected: int) -> None:
    """Every record and event of the run is in the database, no more."""
    async with engine.connect() as connection:
        for table in (RECORDS_TABLE, EVENTS_TABLE):
            statement = select(func.count()).where(table.c.org_id == tenant.org_id)
            found = await connection.scalar(statement)
            if found != expected:
                raise BenchFailed(f"{table.name}: {found} rows, expected {expected}")


def run_backend(backend: Backend, args: argparse.Namespace) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix=f"agentmessage-bench-{backend}-") as tmp,
        scratch_database(backend, Path(tmp), "bulk") as url,
    ):
        tenant, actor = asyncio.run(prepare(url))
        workload = build_workload(tenant, actor, args)
        started = time.perf_counter()
        # Tens of thousands of long-lived dicts, out of the collector's way: else a
        # full collection of this process (~0.1 s) lands in a random timed call or batch.
        gc.collect()
        gc.freeze()
        try:
            with running_server(url, Path(tmp)) as server:
                result = asyncio.run(measure(backend, url, server, tenant, workload, args))
        finally:
            gc.unfreeze()
        progress(f"{backend}: measured in {time.perf_counter() - started:.1f} s")
        return result


# ---------------------------------------------------------------------------
# Reporting


def report(results: Sequence[Result], args: argparse.Namespace) -> str:
    headers = (
        "backend",
        "API rec/s",
        "raw rec/s",
        "API/raw",
        "target",
        "result",
        "API ms/call",
        "raw ms/batch",
        "server peak RSS",
        f"{args.clients} clients rec/s",
    )
    rows = [
        (
            r.backend,
            f"{r.api_rate:,.0f}",
            f"{r.raw_rate:,.0f}",
            f"{r.ratio:.0%}",
            f">= {TARGET:.0%}",
            "met" if r.ratio >= TARGET else "MISSED",
            f"{r.api.median:.0f} (p95 {r.api.p95:.0f})",
            f"{r.raw.median:.0f} (p95 {r.raw.p95:.0f})",
            "n/a" if r.peak_rss_bytes is None else f"{r.peak_rss_bytes / 2**20:.0f} MiB",
            "-" if r.concurrent_rate is None else f"{r.concurrent_rate:,.0f} (info)",
        )
        for r in results
    ]
    title = (
        f"POST {BULK_PATH} against raw batched INSERTs: {args.records:,} fresh contacts each, "
        f"in {BATCH:,}-record calls and batches alternating on the same database after one "
        "warm-up each"
        + (" (no ANALYZE: stale statistics)" if args.stale_statistics else ", then ANALYZE")
        + "; records per second"
    )
    footer = (
        "API: one client, sequential calls over HTTP to `agentmessage serve`, everything "
        "included.\nraw: one transaction per batch, one executemany INSERT into "
        "consent_records and one into consent_events, rows built beforehand.\n"
        f"target: API >= {TARGET:.0%} of raw. Peak RSS of the server during the one-client "
        "calls (VmHWM)."
    )
    return "\n".join([title, "", format_table(headers, rows), "", footer])


def figures(result: Result, args: argparse.Namespace) -> list[Figure]:
    size = f"{result.records:,} records a side, {BATCH:,} a call"
    rows = [
        Figure(
            f"{result.backend}: POST {BULK_PATH}, one client",
            f"{result.api_rate:,.0f} records/s, {result.ratio:.0%} of raw",
            size=size,
            detail=f"{result.api.median:.0f} ms a call (p95 {result.api.p95:.0f})",
            target=f">= {TARGET:.0%} of raw",
            met=result.ratio >= TARGET,
        ),
        Figure(
            f"{result.backend}: raw batched INSERT, same rows",
            f"{result.raw_rate:,.0f} records/s",
            size=size,
            detail=f"{result.raw.median:.0f} ms a batch (p95 {result.raw.p95:.0f})",
        ),
    ]
    if result.peak_rss_bytes is not None:
        rows.append(
            Figure(
                f"{result.backend}: server peak RSS, one client",
                f"{result.peak_rss_bytes / 2**20:,.0f} MiB",
                size=size,
            )
        )
    if result.concurrent_rate is not None:
        rows.append(
            Figure(
                f"{result.backend}: POST {BULK_PATH}, {args.clients} clients",
                f"{result.concurrent_rate:,.0f} records/s",
                size=f"{result.records:,} records",
            )
        )
    return rows


def run(args: argparse.Namespace) -> list[Figure]:
    """Every backend asked for, in turn; the figures of all (PartialFailure: of
    those that did not fail)."""

    def one(backend: Backend) -> list[Figure]:
        return figures(run_backend(backend, args), args)

    return run_backends(args.backend or BACKENDS, one)


def progress(message: str) -> None:
    print(f"[bulk] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--records", type=int, default=20_000, help=f"per side, a multiple of {BATCH}"
    )
    parser.add_argument(
        "--clients", type=int, default=2, help="concurrent clients shown as info (0: skip)"
    )
    parser.add_argument(
        "--stale-statistics",
        action="store_true",
        help="do not ANALYZE after the warm-ups (the API then reads on an empty table's plan)",
    )
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)
    if args.records < BATCH or args.records % BATCH:
        parser.error(f"--records must be a positive multiple of {BATCH}")
    # Three ranges of contacts (API, raw, concurrent) and two warm-ups in +1555xxxxxxx.
    if 3 * args.records + 2 * BATCH > 10_000_000:
        parser.error("--records must be at most 3,000,000")
    if args.clients < 0:
        parser.error("--clients must be at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    failed: list[Backend] = []
    for backend in args.backend or BACKENDS:
        try:
            results.append(run_backend(backend, args))
        except Exception:
            traceback.print_exc()
            progress(f"{backend}: failed, see above")
            failed.append(backend)
    if results:
        print(report(results, args))
    if failed:
        print(f"errors on: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
