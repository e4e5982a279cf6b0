"""Send decisions at scale: ``POST /v1/consent/check`` under load, on PostgreSQL.

1. Single-contact checks: requests/s under wrk (64 connections, 127.0.0.1)
   against the same server's ``/healthz`` in the same run (target >= 40%). Every
   check stores its decision, so this is a read and a write per request. Served
   by the fast check (decisions/fast.py); the same load on a server with it off
   (AGENTMESSAGE_FAST_CHECK=false, every check through the route) is shown too.
2. 1000-contact checks with 1,000,000 records in the organization: median and
   p99 (target p50 <= 50 ms), each decision stored.

    .venv/bin/python bench/check.py [--records 1000000] [--seconds 10] [--rounds 100]

Exits non-zero on an error (a non-2xx answer, a decision not stored).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx

from agentmessage.kit.ids import new_id
from bench.common import (
    Figure,
    WrkLoad,
    analyze,
    copy_tables,
    create_tenant,
    figures_table,
    migrated_engine,
    percentile,
    running_server,
    scratch_database,
    wrk_against_healthz,
)

BATCH = 50_000


def progress(message: str) -> None:
    print(f"[check] {message}", file=sys.stderr, flush=True)


def contact(i: int) -> str:
    return f"+1555{i:07d}"


async def load(url: str, org: uuid.UUID, phone: uuid.UUID, count: int) -> None:
    """``count`` records (85% opted in), one history event each, by COPY; and
    double opt-in challenges as a book that has used them would have: one long
    expired for a fifth of the contacts, one open (pending_confirmation) for 1%."""
    import asyncpg

    rng = random.Random(7)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url)
    try:
        for first in range(0, count, BATCH):
            records, events, challenges = [], [], []
            for i in range(first, min(first + BATCH, count)):
                if i % 5 == 0 or i % 100 == 1:
                    still_open = i % 100 == 1
                    asked = now - (timedelta(hours=1) if still_open else timedelta(days=90))
                    expires = asked + timedelta(days=1)
                    challenges.append(
                        (org, new_id(), phone, contact(i), "open" if still_open else "expired",
                         "Reply YES for reminders.", "Reply YES to confirm.", new_id(), new_id(),
                         asked, expires, None if still_open else expires)
                    )  # fmt: skip
                at = start + timedelta(seconds=i)
                opted_in = rng.random() < 0.85
                record_id = new_id()
                records.append(
                    (org, record_id, phone, contact(i), opted_in, at if opted_in else None,
                     None if opted_in else at, "api", "checkbox", at, at, 0, None)
                )  # fmt: skip
                # No proof-log leaves (a check never reads them): the record's log
                # head stays empty and the event has no place in a chain.
                events.append(
                    (org, new_id(), record_id, "opt_in" if opted_in else "opt_out", "checkbox",
                     "api", "bench", None, '{"type": "bench"}', at, at, None, None)
                )  # fmt: skip
            async with connection.transaction():
                tables = {"consent_records": records, "consent_events": events}
                await copy_tables(connection, tables | {"challenges": challenges})
            progress(f"loaded {min(first + BATCH, count):,} records")
    finally:
        await connection.close()


WRK_CHECK = """
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"phone_number_id": "%s", "contact_numbers": ["+1555%07d"]}', "{phone}", n % {spread})
  return wrk.format("POST", "/v1/consent/check", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer {key}",
  }, body)
end
"""


def big_checks(base_url: str, key: str, phone: uuid.UUID, records: int, rounds: int) -> list[float]:
    rng = random.Random(11)
    samples = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as client:
        for n in range(rounds + 5):
            # Mostly known contacts, some never seen, one malformed.
            contacts = [contact(rng.randrange(int(records * 1.1))) for _ in range(999)]
            body = {"phone_number_id": str(phone), "contact_numbers": [*contacts, "555-0100"]}
            started = time.perf_counter()
            response = client.post("/v1/consent/check", json=body, timeout=30)
            answer = response.json()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200 or len(answer["results"]) != 1000:
                raise RuntimeError(f"check failed: {response.status_code} {str(answer)[:300]}")
            stored = client.get(f"/v1/consent/decisions/{answer['decision_id']}")
            if stored.status_code != 200 or stored.json()["results"] != answer["results"]:
                raise RuntimeError("the decision was not stored as answered")
            if n >= 5:  # the first calls warm the caches
                samples.append(elapsed)
    return samples


async def bench(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    with scratch_database("postgresql", workdir, "check") as url:
        async with migrated_engine(url) as engine:
            tenant = await create_tenant(engine, number="+15550100001")
            await load(url, tenant.org_id, tenant.phone_number_id, args.records)
            await analyze(engine)
        script = workdir / "check.lua"
        lua = WRK_CHECK.replace("{phone}", str(tenant.phone_number_id))
        lua = lua.replace("{key}", tenant.key).replace("{spread}", str(args.records))
        script.write_text(lua)
        checks = WrkLoad("check", "/v1/consent/check", script)
        with running_server(url, workdir, settings={"fast_check": "false"}) as server:
            (routed,) = wrk_against_healthz(server.base_url, [checks], args.seconds)
            progress("wrk through the route done")
        with running_server(url, workdir) as server:
            (check,) = wrk_against_healthz(server.base_url, [checks], args.seconds)
            progress("wrk done")
            samples = big_checks(
                server.base_url, tenant.key, tenant.phone_number_id, args.records, args.rounds
            )
    p50 = statistics.median(samples)
    p99 = percentile(samples, 99)
    size = f"{args.records:,} records"
    return [
        Figure(
            "GET /healthz (wrk, 64 conns)",
            f"{check.healthz:,.0f} req/s",
            detail=f"{check.healthz_before:,.0f} before, {check.healthz_after:,.0f} after",
        ),
        Figure(
            "check, 1 contact (wrk, 64 conns)",
            f"{check.run.rate:,.0f} req/s, {check.ratio:.0%} of healthz",
            size=size,
            detail=f"latency p50 {check.run.p50_ms:.1f} ms, p99 {check.run.p99_ms:.1f} ms",
            target=">= 40% of healthz",
            met=check.ratio >= 0.4,
        ),
        Figure(
            "check, 1 contact, fast check off",
            f"{routed.run.rate:,.0f} req/s, {routed.ratio:.0%} of healthz",
            size=size,
            detail=f"through the route; healthz {routed.healthz:,.0f} req/s",
        ),
        Figure(
            "check, 1000 contacts, decision stored",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            size=size,
            detail=f"{len(samples)} calls",
            target="p50 <= 50 ms",
            met=p50 <= 50,
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="agentmessage-bench-") as workdir:
        return asyncio.run(bench(args, Path(workdir)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=100)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    print(f"Send decisions on PostgreSQL, {args.records:,} records in one organization\n")
    print(figures_table(rows))


if __name__ == "__main__":
    main()
