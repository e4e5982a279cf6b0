"""List latency at scale: ``GET /v1/consent?limit=100`` on page 1 and on a deep page,
with each filter the endpoint supports, and the cost of ``meta.total``.

For each backend: 1,000,000 consent records (one event each; 80% on one sender
number, 20% on a second) in one organization of a fresh database, loaded by COPY on
PostgreSQL. Then, against the real app served on a free port, for the unfiltered
list and each filter (contact_number, phone_number_id, opted_in, since,
consent_method): walk the cursor to page 1000 where the query has that many
pages, then time page 1 and page 1000 over HTTP, interleaved: median and p99.
Each page is checked once against the database (its ids in order, meta.total and
meta.offset exact). Targets (SPEC "Listing"): p99 <= 50 ms on PostgreSQL; page
1000's median within 1.2x of page 1's.

``meta.total`` is counted exactly on every page; the endpoint has no parameter to
skip it. Its cost is timed in-process with the app's own repository on the same
database: the page query alone against the count alone (the two statements of
every list request), median and p99 of each.

    .venv/bin/python bench/list_latency.py [--records N] [--deep-page N] [--rounds N]
                                           [--backend NAME]

Exits non-zero on an error (a failed request, a wrong page), not on a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
from sqlalchemy import ColumnElement, func, select

from agentmessage.auth.service import OrgScope
from agentmessage.consent.repository import ConsentRepository, ListFilters
from agentmessage.db.engine import Database
from agentmessage.kit.timefmt import format_rfc3339
from bench.common import (
    BACKENDS,
    LOAD_SPAN,
    LOAD_START,
    RECORDS_TABLE,
    Backend,
    Figure,
    Latency,
    Tenant,
    add_phone_number,
    create_tenant,
    load_consents,
    loaded_contact,
    main_per_backend,
    migrated_engine,
    open_engine,
    run_backends,
    scratch_database,
    serve_app,
    timed_get,
)

LIMIT: Final = 100
TARGET_P99_MS: Final = 50.0  # on PostgreSQL
TARGET_RATIO: Final = 1.2
SECOND_SENDER_SHARE: Final = 20  # percent of the records on the second sender number
# The since filter keeps the last quarter of the year the records span.
SINCE: Final = LOAD_START + LOAD_SPAN * 0.75


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    filters: ListFilters

    @property
    def params(self) -> dict[str, str]:
        """The filters as the endpoint's query parameters."""
        f = self.filters
        params = {
            "contact_number": f.contact_number,
            "phone_number_id": str(f.phone_number_id) if f.phone_number_id else None,
            "opted_in": None if f.opted_in is None else str(f.opted_in).lower(),
            "since": format_rfc3339(f.since) if f.since else None,
            "consent_method": f.consent_method,
        }
        return {name: value for name, value in params.items() if value is not None}


def queries(count: int, second_phone: uuid.UUID) -> list[Query]:
    return [
        Query("no filter", ListFilters()),
        Query("contact_number", ListFilters(contact_number=loaded_contact(count // 2))),
        Query("phone_number_id (20%)", ListFilters(phone_number_id=second_phone)),
        Query("opted_in=false", ListFilters(opted_in=False)),
        Query("since (last quarter)", ListFilters(since=SINCE)),
        Query("consent_method=written", ListFilters(consent_method="written")),
    ]


@dataclass(frozen=True, slots=True)
class PageTimes:
    query: Query
    matching: int
    first: Latency
    deep: Latency | None  # None: fewer matching records than the deep page needs

    @property
    def ratio(self) -> float | None:
        return None if self.deep is None else self.deep.median / self.first.median


@dataclass(frozen=True, slots=True)
class TotalCost:
    query: Query
    page: Latency  # the page statement alone
    count: Latency  # the count statement alone

    @property
    def share(self) -> float:
        return self.count.median / (self.page.median + self.count.median)


@dataclass(frozen=True, slots=True)
class Result:
    backend: Backend
    records: int
    pages: list[PageTimes]
    totals: list[TotalCost]


# ---------------------------------------------------------------------------
# What a page must hold, read from the database without the app's code


def _where(org: uuid.UUID, filters: ListFilters) -> list[ColumnElement[bool]]:
    c = RECORDS_TABLE.c
    conditions = [c.org_id == org]
    if filters.contact_number is not None:
        conditions.append(c.contact_number == filters.contact_number)
    if filters.phone_number_id is not None:
        conditions.append(c.phone_number_id == filters.phone_number_id)
    if filters.opted_in is not None:
        conditions.append(c.opted_in == filters.opted_in)
    if filters.since is not None:
        conditions.append(c.updated_at >= filters.since)
    if filters.consent_method is not None:
        conditions.append(c.consent_method == filters.consent_method)
    return conditions


async def matching(url: str, org: uuid.UUID, query: Query) -> int:
    async with open_engine(url) as engine, engine.connect() as connection:
        statement = select(func.count()).select_from(RECORDS_TABLE)
        return int(await connection.scalar(statement.where(*_where(org, query.filters))) or 0)


async def expected_ids(url: str, org: uuid.UUID, query: Query, page: int) -> list[str]:
    """The ids of page ``page`` in (updated_at DESC, id DESC) order, by OFFSET."""
    c = RECORDS_TABLE.c
    statement = (
        select(c.id)
        .where(*_where(org, query.filters))
        .order_by(c.updated_at.desc(), c.id.desc())
        .offset((page - 1) * LIMIT)
        .limit(LIMIT)
    )
    async with open_engine(url) as engine, engine.connect() as connection:
        return [str(record_id) for record_id in await connection.scalars(statement)]


def check_page(body: Any, query: Query, want: list[str], total: int, page: int) -> None:
    got = [record["id"] for record in body["data"]]
    meta = body["meta"]
    problems = []
    if got != want:
        problems.append(f"records {got[:2]}... instead of {want[:2]}...")
    if meta["total"] != total:
        problems.append(f"meta.total {meta['total']} instead of {total}")
    if meta["offset"] != (page - 1) * LIMIT:
        problems.append(f"meta.offset {meta['offset']} instead of {(page - 1) * LIMIT}")
    if problems:
        raise RuntimeError(f"{query.name}, page {page}: " + "; ".join(problems))


# ---------------------------------------------------------------------------
# Measuring


def walk_to(client: httpx.Client, query: Query, page: int) -> str:
    """The cursor that requests page ``page``, found by following next_cursor."""
    cursor: str | None = None
    for number in range(1, page):
        params: dict[str, str | int] = {**query.params, "limit": LIMIT}
        if cursor is not None:
            params["cursor"] = cursor
        _, body = timed_get(client, "/v1/consent", params)
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            raise RuntimeError(f"{query.name}: page {number} is the last one, wanted {page}")
    assert cursor is not None
    return cursor


def time_pages(
    client: httpx.Client,
    url: str,
    org: uuid.UUID,
    query: Query,
    args: argparse.Namespace,
) -> PageTimes:
    """Page 1 and the deep page (when there is one), requested alternately so that
    drift hits both alike; each checked against the database on its first request."""
    total = asyncio.run(matching(url, org, query))
    pages = [1]
    requests: dict[int, dict[str, str | int]] = {1: {**query.params, "limit": LIMIT}}
    if total >= args.deep_page * LIMIT:
        cursor = walk_to(client, query, args.deep_page)
        requests[args.deep_page] = {**query.params, "limit": LIMIT, "cursor": cursor}
        pages.append(args.deep_page)
    samples: dict[int, list[float]] = {page: [] for page in pages}
    for round_ in range(args.warmups + args.rounds):
        for page in pages if round_ % 2 == 0 else reversed(pages):
            elapsed_ms, body = timed_get(client, "/v1/consent", requests[page])
            if round_ == 0:
                want = asyncio.run(expected_ids(url, org, query, page))
                check_page(body, query, want, total, page)
            if round_ >= args.warmups:
                samples[page].append(elapsed_ms)
    deep = samples.get(args.deep_page)
    return PageTimes(
        query, total, Latency(tuple(samples[1])), None if deep is None else Latency(tuple(deep))
    )


async def time_total(url: str, org: uuid.UUID, query: Query, args: argparse.Namespace) -> TotalCost:
    """The list's two statements, each on its own, as the app runs them for a GET
    (``Database.statement_session``): the first page and the exact count."""
    scope = OrgScope(org)
    page_ms: list[float] = []
    count_ms: list[float] = []
    async with open_engine(url) as engine:
        database = Database(engine)
        for round_ in range(args.warmups + args.rounds):
            async with database.statement_session() as session:
                repository = ConsentRepository(session)
                started = time.perf_counter()
                await repository.page(scope, query.filters, None, LIMIT + 1)
                page_done = time.perf_counter()
                await repository.count(scope, query.filters)
                count_done = time.perf_counter()
            if round_ >= args.warmups:
                page_ms.append((page_done - started) * 1000)
                count_ms.append((count_done - page_done) * 1000)
    return TotalCost(query, Latency(tuple(page_ms)), Latency(tuple(count_ms)))


async def prepare(url: str, args: argparse.Namespace) -> tuple[Tenant, uuid.UUID]:
    """Migrate, create the tenant and its second sender number, load the records."""
    async with migrated_engine(url) as engine:
        tenant = await create_tenant(engine)
        second = await add_phone_number(engine, tenant, "+15550100009")
    phones = [(tenant.phone_number_id, 100 - SECOND_SENDER_SHARE), (second, SECOND_SENDER_SHARE)]
    await load_consents(url, tenant.org_id, phones, args.records, seed=args.seed, progress=progress)
    return tenant, second


def run_backend(backend: Backend, args: argparse.Namespace) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix=f"agentmessage-bench-{backend}-") as tmp,
        scratch_database(backend, Path(tmp), "list_latency") as url,
    ):
        started = time.perf_counter()
        tenant, second = asyncio.run(prepare(url, args))
        progress(
            f"{backend}: loaded {args.records:,} records in {time.perf_counter() - started:.0f} s"
        )
        pages = []
        with (
            serve_app(url, Path(tmp)) as base_url,
            httpx.Client(base_url=base_url, headers=tenant.headers, timeout=60) as client,
        ):
            for query in queries(args.records, second):
                started = time.perf_counter()
                pages.append(time_pages(client, url, tenant.org_id, query, args))
                progress(f"{backend}: {query.name} in {time.perf_counter() - started:.0f} s")
        totals = [
            asyncio.run(time_total(url, tenant.org_id, query, args))
            for query in queries(args.records, second)
        ]
        return Result(backend, args.records, pages, totals)


# ---------------------------------------------------------------------------
# Reporting


def figures(result: Result, args: argparse.Namespace) -> list[Figure]:
    backend = result.backend
    on_postgresql = backend == "postgresql"
    rows = []
    for times in result.pages:
        label = f"{backend}: {times.query.name}"
        size = f"{times.matching:,} of {result.records:,}"
        first, deep = times.first, times.deep
        rows.append(
            Figure(
                f"{label}, page 1",
                f"p50 {first.median:.1f} ms, p99 {first.p99:.1f} ms",
                size=size,
                detail=f"{len(first.samples_ms)} requests",
                target=f"p99 <= {TARGET_P99_MS:.0f} ms" if on_postgresql else "",
                met=first.p99 <= TARGET_P99_MS if on_postgresql else None,
            )
        )
        if deep is None or times.ratio is None:
            continue
        ratio_met = times.ratio <= TARGET_RATIO
        rows.append(
            Figure(
                f"{label}, page {args.deep_page}",
                f"p50 {deep.median:.1f} ms, p99 {deep.p99:.1f} ms",
                size=size,
                detail=f"{times.ratio:.2f}x page 1 (medians)",
                target=(f"p99 <= {TARGET_P99_MS:.0f} ms; " if on_postgresql else "")
                + f"<= {TARGET_RATIO}x page 1",
                met=ratio_met and (deep.p99 <= TARGET_P99_MS or not on_postgresql),
            )
        )
    served = {times.query.name: times.first for times in result.pages}
    for cost in result.totals:
        with_total = served[cost.query.name].median
        rows.append(
            Figure(
                f"{backend}: meta.total, {cost.query.name}",
                f"count p50 {cost.count.median:.1f} ms, p99 {cost.count.p99:.1f} ms",
                detail=f"page statement alone p50 {cost.page.median:.1f} ms, the count "
                f"{cost.share:.0%} of the two; page 1 served p50 {with_total:.1f} ms with "
                f"the total, about {with_total - cost.count.median:.1f} ms without",
                target="report the cost; exact (checked above)",
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
    print(f"[list] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--deep-page", type=int, default=1000, help="the deep page timed")
    parser.add_argument("--rounds", type=int, default=200, help="timed requests per page")
    parser.add_argument("--warmups", type=int, default=5, help="untimed requests per page")
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)
    if args.records < args.deep_page * LIMIT:
        parser.error(f"--records must be at least {args.deep_page * LIMIT} for that deep page")
    if args.deep_page < 2 or args.rounds < 1 or args.warmups < 0:
        parser.error("--deep-page must be at least 2, --rounds 1 and --warmups 0")
    if args.records > 5_000_000:
        parser.error("--records must be at most 5,000,000 (contact numbers run out)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return main_per_backend(
        args.backend or BACKENDS,
        lambda backend: figures(run_backend(backend, args), args),
        lambda backend: f"GET /v1/consent?limit={LIMIT}, {args.records:,} records, {backend}",
    )


if __name__ == "__main__":
    sys.exit(main())
