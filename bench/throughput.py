"""Throughput under wrk: reads, writes and inbound STOP keywords, each against the
same server's ``/healthz`` in the same run.

For each backend: 1,000,000 consent records (one event each) in one organization
of a fresh database (COPY on PostgreSQL), the real app served in one process, then
wrk (2 threads, 64 connections, 127.0.0.1, 10 s a run) on:

- ``GET /v1/consent/{id}``, ids drawn at random from 10,000 loaded records
  (target: >= 40% of healthz);
- ``POST /v1/consent``, a new contact per request (a Lua script numbers them), so
  every request inserts a record and its history event (target: >= 25%);
- ``POST /v1/sandbox/inbound`` with STOP from a new contact per request: the
  contact is opted out (its record created) and one confirmation SMS queued,
  which the server's dispatcher then sends (reported).

``/healthz`` runs before and after each loaded run; a ratio is to their mean.
Each kind of request is tried once beforehand for its exact status, and after
every run of a writing load the database must hold a new record per answer.

    .venv/bin/python bench/throughput.py [--records N] [--seconds S] [--backend NAME]

Exits non-zero on an error (an answer >= 400, a socket error or timeout, a write
that inserted nothing), not on a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from typing import Any, Final

import httpx
from sqlalchemy import func, select

from agentmessage.kit.clock import utcnow
from bench.common import (
    BACKENDS,
    RECORDS_TABLE,
    WRK_CONNECTIONS,
    WRK_THREADS,
    AgainstHealthz,
    Backend,
    Figure,
    Server,
    Tenant,
    WrkLoad,
    WrkRun,
    create_tenant,
    load_consents,
    main_per_backend,
    migrated_engine,
    open_engine,
    run_backends,
    running_server,
    scratch_database,
    wrk_against_healthz,
)

READ_TARGET: Final = 0.40
WRITE_TARGET: Final = 0.25
READ_IDS: Final = 10_000
SENDER: Final = "+15550100000"  # create_tenant's
SETTLE_TIMEOUT_S: Final = 60

# Numbers the Lua scripts give each thread: wrk calls setup() once per thread in
# its main Lua state, before the thread's own state runs init().
LUA_THREADS: Final = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
"""

LUA_READ: Final = (
    LUA_THREADS
    + """
local ids = {IDS}
local headers = {["Authorization"] = "Bearer {KEY}"}
function init(args)
  math.randomseed(thread_number * 7919)
end
function request()
  return wrk.format("GET", "/v1/consent/" .. ids[math.random(#ids)], headers)
end
"""
)

# The contact of request n of a thread: +1 {prefix}{thread}{n:06d}, where the run's
# three-digit prefix (script argument) is new for every wrk run of any writing load,
# so that no two requests of a backend's runs name the same contact.
LUA_NEW_CONTACT: Final = (
    LUA_THREADS
    + """
local headers = {["Authorization"] = "Bearer {KEY}", ["Content-Type"] = "application/json"}
function init(args)
  prefix = args[1]
  n = 0
end
function request()
  n = n + 1
  local contact = string.format("+1%s%d%06d", prefix, thread_number, n)
  return wrk.format("POST", "{PATH}", headers, string.format('{BODY}', contact))
end
"""
)


def lua_string(text: str) -> str:
    """``text`` inside a single-quoted Lua string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def capture_body(tenant: Tenant, contact: str) -> dict[str, Any]:
    """A valid POST /v1/consent body, as tests/fixtures/builders.py's capture_body."""
    captured_at = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "phone_number_id": str(tenant.phone_number_id),
        "contact_number": contact,
        "opted_in": True,
        "evidence": {
            "captured_at": captured_at,
            "ip_address": "203.0.113.42",
            "user_agent": "Mozilla/5.0",
            "agreement_text": "By signing up you agree to receive appointment reminders. "
            "Reply STOP to opt out.",
            "form_url": "https://example.com/signup",
            "consent_method": "checkbox",
        },
    }


def inbound_body(contact: str) -> dict[str, str]:
    return {"from": contact, "to": SENDER, "body": "STOP"}


def lua_format(body: dict[str, Any]) -> str:
    """``body`` as JSON with ``%s`` where the contact goes, for string.format."""
    marker = "+10000000000"
    text = json.dumps(body).replace("%", "%%")
    assert text.count(marker) == 1
    return lua_string(text.replace(marker, "%s"))


# ---------------------------------------------------------------------------
# Checks


class Prefixes:
    """A new contact prefix (500..549, area codes apart from the loaded +1555 ones)
    for every run of a writing load."""

    def __init__(self) -> None:
        self._next = count(500)

    def take(self) -> list[str]:
        prefix = next(self._next)
        if prefix > 549:
            raise RuntimeError("out of contact prefixes: too many writing runs")
        return [str(prefix)]


class NewRecords:
    """After each run of a writing load: one new record per answered request (a
    few more for requests still in flight when wrk stopped), none after reads."""

    def __init__(self, url: str, tenant: Tenant, writing: set[str]) -> None:
        self.url = url
        self.tenant = tenant
        self.writing = writing
        self.records = asyncio.run(self.count())

    def settled(self) -> int:
        """The count once it stops changing: the requests still in flight when wrk
        stopped (up to one a connection) may wait for a lock for seconds."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last = asyncio.run(self.count())
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = asyncio.run(self.count())
            if now == last:
                return now
            last = now
        raise RuntimeError(f"records still being written {SETTLE_TIMEOUT_S} s after wrk stopped")

    async def count(self) -> int:
        statement = select(func.count()).where(RECORDS_TABLE.c.org_id == self.tenant.org_id)
        async with open_engine(self.url) as engine, engine.connect() as connection:
            return int(await connection.scalar(statement) or 0)

    def __call__(self, load: WrkLoad, run: WrkRun) -> None:
        before, self.records = self.records, self.settled()
        created = self.records - before
        expected = run.requests if load.name in self.writing else 0
        if not expected <= created <= expected + WRK_CONNECTIONS:
            raise RuntimeError(
                f"{load.name}: {created:,} new records after {run.requests:,} answers"
            )


def probe(server: Server, tenant: Tenant, read_id: str) -> None:
    """One request of each kind, for its exact status and answer."""
    with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=30) as client:
        read = client.get(f"/v1/consent/{read_id}")
        if read.status_code != 200 or read.json()["id"] != read_id:
            raise RuntimeError(f"GET /v1/consent/{{id}} -> {read.status_code}: {read.text[:300]}")
        write = client.post("/v1/consent", json=capture_body(tenant, "+14990000001"))
        if write.status_code != 201:
            raise RuntimeError(f"POST /v1/consent -> {write.status_code}: {write.text[:300]}")
        stop = client.post("/v1/sandbox/inbound", json=inbound_body("+14990000002"))
        if stop.status_code != 201 or stop.json()["action"] != "opted_out":
            raise RuntimeError(f"STOP -> {stop.status_code}: {stop.text[:300]}")


# ---------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True, slots=True)
class Result:
    backend: Backend
    records: int
    read: AgainstHealthz
    write: AgainstHealthz
    inbound: AgainstHealthz


async def prepare(url: str, args: argparse.Namespace) -> tuple[Tenant, list[str]]:
    """Migrate, create the tenant, load the records; ids of a random sample of them."""
    async with migrated_engine(url) as engine:
        tenant = await create_tenant(engine, number=SENDER)
    phones = [(tenant.phone_number_id, 1)]
    await load_consents(url, tenant.org_id, phones, args.records, seed=args.seed, progress=progress)
    statement = (
        select(RECORDS_TABLE.c.id)
        .where(RECORDS_TABLE.c.org_id == tenant.org_id)
        .order_by(func.random())
        .limit(READ_IDS)
    )
    async with open_engine(url) as engine, engine.connect() as connection:
        ids = [str(record_id) for record_id in await connection.scalars(statement)]
    return tenant, ids


def write_scripts(workdir: Path, tenant: Tenant, ids: Sequence[str]) -> dict[str, Path]:
    marker = "+10000000000"
    scripts = {
        "read": LUA_READ.replace("{IDS}", "{" + ",".join(f'"{i}"' for i in ids) + "}"),
        "write": LUA_NEW_CONTACT.replace("{PATH}", "/v1/consent").replace(
            "{BODY}", lua_format(capture_body(tenant, marker))
        ),
        "inbound": LUA_NEW_CONTACT.replace("{PATH}", "/v1/sandbox/inbound").replace(
            "{BODY}", lua_format(inbound_body(marker))
        ),
    }
    paths = {}
    for name, script in scripts.items():
        paths[name] = workdir / f"throughput-{name}.lua"
        paths[name].write_text(script.replace("{KEY}", tenant.key))
    return paths


def run_backend(backend: Backend, args: argparse.Namespace) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix=f"agentmessage-bench-{backend}-") as tmp,
        scratch_database(backend, Path(tmp), "throughput") as url,
    ):
        workdir = Path(tmp)
        started = time.perf_counter()
        tenant, ids = asyncio.run(prepare(url, args))
        loaded_s = time.perf_counter() - started
        progress(f"{backend}: loaded {args.records:,} records in {loaded_s:.0f} s")
        scripts = write_scripts(workdir, tenant, ids)
        prefixes = Prefixes()
        loads = [
            WrkLoad("read", "/v1/consent", scripts["read"]),
            WrkLoad("write", "/v1/consent", scripts["write"], prefixes.take),
            WrkLoad("inbound", "/v1/sandbox/inbound", scripts["inbound"], prefixes.take),
        ]
        with running_server(url, workdir) as server:
            probe(server, tenant, ids[0])
            check = NewRecords(url, tenant, writing={"write", "inbound"})
            read, write, inbound = wrk_against_healthz(
                server.base_url, loads, args.seconds, after_each=check
            )
        progress(f"{backend}: measured in {time.perf_counter() - started:.0f} s")
        return Result(backend, args.records, read, write, inbound)


# ---------------------------------------------------------------------------
# Reporting


def figures(result: Result) -> list[Figure]:
    backend = result.backend
    size = f"{result.records:,} records"
    healthz = [r.healthz_before for r in (result.read, result.write, result.inbound)]
    healthz.append(result.inbound.healthz_after)
    rows = [
        Figure(
            f"{backend}: GET /healthz",
            f"{sum(healthz) / len(healthz):,.0f} req/s",
            detail="runs: " + ", ".join(f"{rate:,.0f}" for rate in healthz),
        )
    ]
    for name, measured, target in (
        ("GET /v1/consent/{id}", result.read, READ_TARGET),
        ("POST /v1/consent (new contact each)", result.write, WRITE_TARGET),
        ("POST /v1/sandbox/inbound STOP (new contact each)", result.inbound, None),
    ):
        run = measured.run
        rows.append(
            Figure(
                f"{backend}: {name}",
                f"{run.rate:,.0f} req/s, {measured.ratio:.0%} of healthz",
                size=size,
                detail=f"healthz {measured.healthz_before:,.0f} before, "
                f"{measured.healthz_after:,.0f} after; latency p50 {run.p50_ms:.1f} ms, "
                f"p99 {run.p99_ms:.1f} ms; {run.requests:,} requests",
                target="report" if target is None else f">= {target:.0%} of healthz",
                met=None if target is None else measured.ratio >= target,
            )
        )
    return rows


def run(args: argparse.Namespace) -> list[Figure]:
    """Every backend asked for, in turn; the figures of all (PartialFailure: of
    those that did not fail)."""

    def one(backend: Backend) -> list[Figure]:
        return figures(run_backend(backend, args))

    return run_backends(args.backend or BACKENDS, one)


def progress(message: str) -> None:
    print(f"[throughput] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000, help="loaded beforehand")
    parser.add_argument("--seconds", type=int, default=10, help="of each wrk run")
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 5_000_000:
        parser.error("--records must be 1..5,000,000")
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return main_per_backend(
        args.backend or BACKENDS,
        lambda backend: figures(run_backend(backend, args)),
        lambda backend: (
            f"Throughput on {backend}: wrk, {WRK_THREADS} threads, {WRK_CONNECTIONS} "
            f"connections, {args.seconds} s a run"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
