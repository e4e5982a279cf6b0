# The padding text is partly Russian on purpose: its letters look like Latin ones.
# ruff: noqa: RUF001
"""Peak memory of the server during bulk capture with 8 MiB request bodies.

For each backend: a fresh database and the real app served in one process. Each
call of ``POST /v1/consent/bulk`` carries 1000 records of new contacts padded to a
body just under the endpoint's 8 MiB limit (agreement_text up to its 4000
characters, partly Cyrillic so that it weighs more than one byte a character;
user_agent 1024 characters; form_url 2048), every record valid and accepted.
After one warm-up call the server's peak RSS (VmHWM) is reset; then 10 calls from
one client, one at a time (target: peak RSS <= 300 MB), then the peak is reset
again for 10 calls from 4 concurrent clients (reported).

    .venv/bin/python bench/memory.py [--calls N] [--clients N] [--backend NAME]

Exits non-zero on an error (a call not answered 200 with every record accepted, a
peak RSS that cannot be read), not on a missed target.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: make ``bench`` and ``tests`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any, Final

import httpx

from bench.bulk import BATCH, CALL_TIMEOUT, captures, post_bulk
from bench.common import (
    BACKENDS,
    Backend,
    Figure,
    Server,
    Tenant,
    create_tenant,
    main_per_backend,
    migrated_engine,
    run_backends,
    running_server,
    scratch_database,
)

MIB: Final = 1024 * 1024
BODY_LIMIT: Final = 8 * MIB  # the app's limit for /v1/consent/bulk (app.py)
# Just under the limit: room for the few bytes a record's random fields vary by.
BODY_TARGET: Final = BODY_LIMIT - 16 * 1024
TARGET_BYTES: Final = 300 * 1000 * 1000  # "300 MB"

AGREEMENT_MAX: Final = 4000
USER_AGENT_MAX: Final = 1024
FORM_URL_MAX: Final = 2048
# A bilingual consent notice, as sent to a Russian-speaking audience: the Cyrillic
# half takes two bytes a character in UTF-8.
AGREEMENT: Final = (
    "By checking this box you agree to receive recurring automated appointment reminders "
    "and offers from Acme Dental at the number provided. Consent is not a condition of "
    "purchase. Msg & data rates may apply. Reply STOP to opt out, HELP for help. "
    "Отмечая это поле, вы соглашаетесь получать регулярные автоматические напоминания о "
    "записи и предложения от Acme Dental на указанный номер. Согласие не является условием "
    "покупки. Может взиматься плата за сообщения и передачу данных. Ответьте STOP для "
    "отказа от рассылки, HELP для справки. "
)
USER_AGENT: Final = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 "
    "[FB_IAB/FB4A;FBAV/460.0.0.48.109;] "
)
FORM_URL: Final = "https://www.acmedental.example/book?utm_source=facebook&utm_medium=paid"


def padded(text: str, length: int) -> str:
    """``text`` repeated and cut to ``length`` characters."""
    return (text * (length // len(text) + 1))[:length]


def encode(records: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"records": list(records)}, ensure_ascii=False).encode()


def heavy_body(tenant: Tenant, contacts: Iterator[int], rng: random.Random) -> bytes:
    """1000 valid records of new contacts in a body of just under ``BODY_TARGET`` bytes."""
    records = captures(tenant, contacts, BATCH, rng)
    for n, record in enumerate(records):
        evidence = record["evidence"]
        evidence["user_agent"] = padded(USER_AGENT, USER_AGENT_MAX)
        evidence["form_url"] = padded(f"{FORM_URL}&click_id={n:08d}&ref=", FORM_URL_MAX)
    agreement = AGREEMENT_MAX
    while True:
        for record in records:
            record["evidence"]["agreement_text"] = padded(AGREEMENT, agreement)
        body = encode(records)
        excess = len(body) - BODY_TARGET
        if excess <= 0:
            break
        # Cut at least two bytes a character off each record's text, rounded up.
        agreement -= excess // (2 * BATCH) + 1
    if len(body) < BODY_TARGET * 0.99:
        raise RuntimeError(f"the body holds only {len(body):,} bytes; pad it more")
    return body


# ---------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True, slots=True)
class Phase:
    clients: int
    calls: int
    start_rss: int  # VmHWM right after the reset
    peak_rss: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Result:
    backend: Backend
    body_bytes: int
    sequential: Phase
    concurrent: Phase | None


def peak_of(server: Server) -> int:
    peak = server.peak_rss_bytes()
    if peak is None:
        raise RuntimeError("cannot read the server's peak RSS (/proc/<pid>/status)")
    return peak


async def phase(server: Server, tenant: Tenant, bodies: list[bytes], clients: int) -> Phase:
    """``bodies`` sent by ``clients`` clients, each one call at a time, after a reset
    of the server's peak RSS."""
    if not server.reset_peak_rss():
        raise RuntimeError("cannot reset the server's peak RSS (/proc/<pid>/clear_refs)")
    start = peak_of(server)
    queue = list(reversed(bodies))

    async def client_loop() -> None:
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=tenant.headers, timeout=CALL_TIMEOUT
        ) as client:
            while queue:
                await post_bulk(client, queue.pop(), BATCH)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client_loop())
    return Phase(clients, len(bodies), start, peak_of(server), time.perf_counter() - started)


def run_backend(backend: Backend, args: argparse.Namespace) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix=f"agentmessage-bench-{backend}-") as tmp,
        scratch_database(backend, Path(tmp), "memory") as url,
    ):
        tenant = asyncio.run(prepare(url))
        rng = random.Random(args.seed)
        contacts = count()
        # Built beforehand (each about 8 MiB in this process, not in the server's).
        warmup = heavy_body(tenant, contacts, rng)
        sequential = [heavy_body(tenant, contacts, rng) for _ in range(args.calls)]
        concurrent = [heavy_body(tenant, contacts, rng) for _ in range(args.calls)]
        with running_server(url, Path(tmp)) as server:
            result = asyncio.run(
                measure(backend, server, tenant, warmup, sequential, concurrent, args)
            )
        progress(f"{backend}: peak {result.sequential.peak_rss / MIB:.0f} MiB with one client")
        return result


async def prepare(url: str) -> Tenant:
    async with migrated_engine(url) as engine:
        return await create_tenant(engine)


async def measure(
    backend: Backend,
    server: Server,
    tenant: Tenant,
    warmup: bytes,
    sequential: list[bytes],
    concurrent: list[bytes],
    args: argparse.Namespace,
) -> Result:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=tenant.headers, timeout=CALL_TIMEOUT
    ) as client:
        await post_bulk(client, warmup, BATCH)
    one = await phase(server, tenant, sequential, 1)
    many = await phase(server, tenant, concurrent, args.clients) if args.clients > 1 else None
    return Result(backend, len(warmup), one, many)


# ---------------------------------------------------------------------------
# Reporting


def figures(result: Result) -> list[Figure]:
    rows = []
    for measured in (result.sequential, result.concurrent):
        if measured is None:
            continue
        gated = measured.clients == 1
        who = "1 client" if gated else f"{measured.clients} concurrent clients"
        rows.append(
            Figure(
                f"{result.backend}: server peak RSS, bulk with 8 MiB bodies, {who}",
                f"{measured.peak_rss / 1e6:,.0f} MB ({measured.peak_rss / MIB:,.0f} MiB)",
                size=f"{measured.calls} calls of {BATCH:,} records, "
                f"{result.body_bytes / MIB:.2f} MiB each",
                detail=f"{measured.start_rss / 1e6:,.0f} MB before the calls; "
                f"{measured.calls * BATCH / measured.seconds:,.0f} records/s",
                target=f"<= {TARGET_BYTES / 1e6:.0f} MB" if gated else "report",
                met=measured.peak_rss <= TARGET_BYTES if gated else None,
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
    print(f"[memory] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=10, help="of each phase")
    parser.add_argument(
        "--clients", type=int, default=4, help="of the concurrent phase (below 2: skip it)"
    )
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return main_per_backend(
        args.backend or BACKENDS,
        lambda backend: figures(run_backend(backend, args)),
        lambda backend: f"Server memory on {backend}, bulk calls with 8 MiB bodies",
    )


if __name__ == "__main__":
    sys.exit(main())
