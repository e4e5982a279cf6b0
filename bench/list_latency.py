"""List latency at depth: page 1 and page 500 of ``GET /v1/consent?limit=100``.

For each backend: load 100,000 consent records (one event each) into a fresh
database, serve the real app on a free port, walk the cursor to page 500
(records 49,901..50,000), then time page 1 and page 500 over HTTP, interleaved,
and print the median and p95 of each. SPEC "Listing": a page's latency must not
grow with its depth; the target is page 500 within 1.5x of page 1. The same with
an ``opted_in=true`` filter is shown for information.

    .venv/bin/python bench/list_latency.py [--records N] [--rounds N] [--backend NAME]

Exits non-zero on an error (a failed request, a wrong page), not on a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import random
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Final, cast

import httpx
from sqlalchemy import Table

from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.kit.ids import new_id
from bench.common import (
    BACKENDS,
    Backend,
    Latency,
    Tenant,
    analyze,
    create_tenant,
    format_table,
    insert_batches,
    migrated_engine,
    scratch_database,
    serve_app,
    timed_get,
)

LIMIT: Final = 100
DEEP_PAGE: Final = 500
TARGET_RATIO: Final = 1.5

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
# Every record gets its own updated_at slot in one year, at a random microsecond.
SPAN: Final = timedelta(days=365)
START: Final = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    params: dict[str, str]
    gated: bool  # whether the 1.5x target applies

    def matches(self, record: Key) -> bool:
        return "opted_in" not in self.params or record.opted_in


QUERIES: Final = (
    Query("all records", {}, gated=True),
    Query("opted_in=true", {"opted_in": "true"}, gated=False),
)


@dataclass(frozen=True, slots=True)
class Key:
    """What the list order and the filters need to know of a loaded record."""

    updated_at: datetime
    id: uuid.UUID
    opted_in: bool


@dataclass(frozen=True, slots=True)
class Result:
    backend: Backend
    query: Query
    matching: int
    first: Latency
    deep: Latency

    @property
    def ratio(self) -> float:
        return self.deep.median / self.first.median


# ---------------------------------------------------------------------------
# Loading


def generate(tenant: Tenant, count: int, seed: int) -> Iterator[tuple[dict[str, Any], Key]]:
    """``count`` records of distinct contacts with distinct updated_at values.

    Ids are UUIDv7 in insertion order while updated_at is shuffled, so the list
    order is not the physical order, as after years of updates.
    """
    rng = random.Random(seed)
    step = SPAN / count
    slots = rng.sample(range(count), count)
    methods = [name for name, _ in METHODS]
    weights = [weight for _, weight in METHODS]
    for n, slot in enumerate(slots):
        updated_at = START + slot * step + timedelta(microseconds=rng.randrange(1, 1_000_000))
        created_at = updated_at - timedelta(seconds=rng.randrange(0, 90 * 86_400))
        opted_in = rng.random() < OPTED_IN_SHARE
        method = rng.choices(methods, weights)[0]
        record_id = new_id()
        record = {
            "org_id": tenant.org_id,
            "id": record_id,
            "phone_number_id": tenant.phone_number_id,
            "contact_number": f"+1555{2_000_000 + n:07d}",
            "opted_in": opted_in,
            "opted_in_at": updated_at if opted_in else created_at,
            "opted_out_at": None if opted_in else updated_at,
            "source": SOURCE_OF_METHOD.get(method, "api"),
            "consent_method": method,
            "created_at": created_at,
            "updated_at": updated_at,
        }
        yield record, Key(updated_at, record_id, opted_in)


def event_of(record: dict[str, Any]) -> dict[str, Any]:
    """The event that left ``record`` in its current state."""
    return {
        "org_id": record["org_id"],
        "id": new_id(),
        "consent_id": record["id"],
        "type": "opt_in" if record["opted_in"] else "opt_out",
        "consent_method": record["consent_method"] if record["opted_in"] else None,
        "source": record["source"],
        "reason": "bench:load",
        "evidence": None,
        "actor": {"type": "bench"},
        "occurred_at": record["updated_at"],
        "created_at": record["updated_at"],
    }


async def load(url: str, count: int, seed: int, batch_size: int) -> tuple[Tenant, list[Key]]:
    """Migrate, create the tenant, bulk-insert ``count`` records and events, analyze."""
    records_table = cast(Table, ConsentRecord.__table__)
    events_table = cast(Table, ConsentEvent.__table__)
    async with migrated_engine(url) as engine:
        tenant = await create_tenant(engine)
        keys: list[Key] = []
        rows = generate(tenant, count, seed)
        async with engine.begin() as connection:
            while batch := list(islice(rows, batch_size)):
                records = [record for record, _ in batch]
                # Records first: each event's foreign key needs its record.
                await insert_batches(connection, records_table, records, batch_size=batch_size)
                await insert_batches(
                    connection, events_table, map(event_of, records), batch_size=batch_size
                )
                keys.extend(key for _, key in batch)
        await analyze(engine)
    return tenant, keys


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


def check_page(body: Any, query: Query, expected: Sequence[Key], page: int) -> None:
    """The page holds exactly the records the (updated_at DESC, id DESC) order puts there."""
    start = (page - 1) * LIMIT
    want = [str(key.id) for key in expected[start : start + LIMIT]]
    got = [record["id"] for record in body["data"]]
    meta = body["meta"]
    problems = []
    if got != want:
        problems.append(f"records {got[:2]}... instead of {want[:2]}...")
    if meta["total"] != len(expected):
        problems.append(f"meta.total {meta['total']} instead of {len(expected)}")
    if meta["offset"] != start:
        problems.append(f"meta.offset {meta['offset']} instead of {start}")
    if problems:
        raise RuntimeError(f"{query.name}, page {page}: " + "; ".join(problems))


def measure(
    client: httpx.Client,
    query: Query,
    expected: Sequence[Key],
    *,
    warmups: int,
    rounds: int,
) -> tuple[Latency, Latency]:
    """(page 1, deep page) latencies, requested alternately so drift hits both alike."""
    deep_cursor = walk_to(client, query, DEEP_PAGE)
    requests: dict[int, dict[str, str | int]] = {
        1: {**query.params, "limit": LIMIT},
        DEEP_PAGE: {**query.params, "limit": LIMIT, "cursor": deep_cursor},
    }
    samples: dict[int, list[float]] = {1: [], DEEP_PAGE: []}
    for round_ in range(warmups + rounds):
        order = (1, DEEP_PAGE) if round_ % 2 == 0 else (DEEP_PAGE, 1)
        for page in order:
            elapsed_ms, body = timed_get(client, "/v1/consent", requests[page])
            if round_ == 0:
                check_page(body, query, expected, page)
            if round_ >= warmups:
                samples[page].append(elapsed_ms)
    return Latency(tuple(samples[1])), Latency(tuple(samples[DEEP_PAGE]))


def order_of(keys: Sequence[Key], query: Query) -> list[Key]:
    matching = [key for key in keys if query.matches(key)]
    # UUIDs compare like the 16 bytes PostgreSQL compares and the hex SQLite stores.
    return sorted(matching, key=lambda key: (key.updated_at, key.id), reverse=True)


def run_backend(backend: Backend, args: argparse.Namespace) -> list[Result]:
    with (
        tempfile.TemporaryDirectory(prefix=f"agentmessage-bench-{backend}-") as tmp,
        scratch_database(backend, Path(tmp), "list_latency") as url,
    ):
        started = time.perf_counter()
        tenant, keys = asyncio.run(load(url, args.records, args.seed, args.batch_size))
        progress(
            f"{backend}: loaded {len(keys):,} records and events "
            f"in {time.perf_counter() - started:.1f} s"
        )
        results = []
        with (
            serve_app(url, Path(tmp)) as base_url,
            httpx.Client(base_url=base_url, headers=tenant.headers, timeout=60) as client,
        ):
            for query in QUERIES:
                expected = order_of(keys, query)
                started = time.perf_counter()
                first, deep = measure(
                    client, query, expected, warmups=args.warmups, rounds=args.rounds
                )
                results.append(Result(backend, query, len(expected), first, deep))
                progress(
                    f"{backend}: {query.name} measured in {time.perf_counter() - started:.1f} s"
                )
        return results


# ---------------------------------------------------------------------------
# Reporting


def report(results: Sequence[Result], args: argparse.Namespace) -> str:
    headers = (
        "backend",
        "query",
        "matching",
        "p1 median",
        "p1 p95",
        f"p{DEEP_PAGE} median",
        f"p{DEEP_PAGE} p95",
        f"p{DEEP_PAGE}/p1",
        "target",
    )
    rows = [
        (
            r.backend,
            r.query.name,
            f"{r.matching:,}",
            f"{r.first.median:.1f}",
            f"{r.first.p95:.1f}",
            f"{r.deep.median:.1f}",
            f"{r.deep.p95:.1f}",
            f"{r.ratio:.2f}x",
            ("met" if r.ratio <= TARGET_RATIO else "MISSED") if r.query.gated else "(info)",
        )
        for r in results
    ]
    title = (
        f"GET /v1/consent?limit={LIMIT}: page 1 and page {DEEP_PAGE} of {args.records:,} "
        f"records, {args.rounds} requests each after {args.warmups} warm-ups, "
        "milliseconds over HTTP"
    )
    footer = f"target: page {DEEP_PAGE} median within {TARGET_RATIO}x of page 1 (all records)"
    return "\n".join([title, "", format_table(headers, rows, text_columns=2), "", footer])


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmups", type=int, default=5, help="untimed requests per page")
    parser.add_argument("--batch-size", type=int, default=5_000, help="rows per INSERT")
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)
    if args.records < DEEP_PAGE * LIMIT:
        parser.error(f"--records must be at least {DEEP_PAGE * LIMIT} to reach page {DEEP_PAGE}")
    if args.rounds < 1 or args.warmups < 0:
        parser.error("--rounds must be at least 1 and --warmups at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    failed: list[Backend] = []
    for backend in args.backend or BACKENDS:
        try:
            results.extend(run_backend(backend, args))
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
