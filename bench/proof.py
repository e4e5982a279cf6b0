"""The proof log at a million events, on PostgreSQL.

Loads 1,000,000 history events into one organization (records, events and
their leaves, hashed by the log's own code, then COPY), one contact of which
has 100 events spread across the whole log. Then, against the served app:

- ``GET /v1/consent/{id}/proof`` of that contact: median and p99 (target p50 <= 50 ms);
- the cost of signing a checkpoint after one more event, at 1,000 leaves and at
  1,000,000 (target: the same; it must not grow with the log);
- ``proof audit`` over the whole log: leaves/s.

    .venv/bin/python bench/proof.py [--events 1000000] [--rounds 200]

Exits non-zero on an error (a packet that does not verify, a failed request).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from agentmessage.auth.service import OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.db.engine import Database
from agentmessage.kit.ids import new_id
from agentmessage.proof import log, merkle
from agentmessage.proof.audit import audit
from agentmessage.proof.keys import Signer, load_or_create
from agentmessage.proof.verify import parse_vkey, verify_packet
from bench.common import (
    Figure,
    analyze,
    copy_tables,
    create_tenant,
    figures_table,
    migrated_engine,
    percentile,
    running_server,
    scratch_database,
)

SUBJECT_EVENTS = 100
BATCH = 50_000
EVIDENCE = {
    "captured_at": "2025-03-01T10:00:00Z",
    "consent_method": "checkbox",
    "agreement_text": "I agree to receive recurring automated texts from Bench Org. "
    "Msg & data rates may apply. Reply STOP to cancel.",
    "ip_address": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "form_url": "https://example.com/signup",
}


def progress(message: str) -> None:
    print(f"[proof] {message}", file=sys.stderr, flush=True)


async def load(url: str, org: uuid.UUID, phone: uuid.UUID, sender: str, events: int) -> uuid.UUID:
    """``events`` events (and leaves) in one organization; the subject's record id."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        subject = new_id()
        subject_opted_in = True
        spacing = events // SUBJECT_EVENTS
        start = datetime(2025, 1, 1, tzinfo=UTC)
        frontier: list[bytes] = []
        size = 0
        records: list[tuple[Any, ...]] = []
        event_rows: list[tuple[Any, ...]] = []
        leaves: list[tuple[Any, ...]] = []

        async def flush() -> None:
            async with connection.transaction():
                await copy_tables(
                    connection,
                    {
                        "consent_records": records,
                        "consent_events": event_rows,
                        "log_leaves": leaves,
                    },
                )
            records.clear()
            event_rows.clear()
            leaves.clear()

        subject_last = subject_opted_in_at = start
        subject_events, subject_head = 0, None
        # The subject's record first: its events' foreign key needs it.
        records.append((org, subject, phone, "+15559990000", True, start, None, "api",
                        "checkbox", start, start, 0, None))  # fmt: skip
        for i in range(events):
            at = start + timedelta(seconds=i)
            is_subject = i % spacing == 0 and i // spacing < SUBJECT_EVENTS
            if is_subject:
                consent_id, contact = subject, "+15559990000"
                kind = "opt_in" if (i // spacing) % 2 == 0 else "opt_out"
                subject_opted_in = kind == "opt_in"
                subject_last = at
                if subject_opted_in:
                    subject_opted_in_at = at
                sequence, previous = subject_events + 1, subject_head
            else:
                consent_id, contact, kind = new_id(), f"+1555{i:07d}", "opt_in"
                sequence, previous = 1, None
            event_id = new_id()
            evidence = EVIDENCE if kind == "opt_in" else None
            actor = {"type": "api_key", "id": "bench"}
            document = log.event_document(
                org_id=org, event_id=event_id, consent_id=consent_id, phone_number_id=phone,
                contact_number=contact, type=kind, consent_method="checkbox", source="api",
                reason="bench", evidence=evidence, actor=actor, occurred_at=at, created_at=at,
                sender_number=sender, sequence=sequence, previous_leaf_hash=previous,
            )  # fmt: skip
            leaf = merkle.leaf_hash(merkle.canonical_json(document))
            if is_subject:
                subject_events, subject_head = sequence, leaf
            else:
                records.append(
                    (org, consent_id, phone, contact, True, at, None, "api", "checkbox", at, at,
                     1, leaf)
                )  # fmt: skip
            event_rows.append(
                (org, event_id, consent_id, kind, "checkbox", "api", "bench",
                 _json(evidence), _json(actor), at, at, sequence, previous)
            )  # fmt: skip
            hashes = merkle.append(frontier, size, leaf)
            leaves.append((org, size, event_id, consent_id, hashes))
            size += 1
            if len(event_rows) == BATCH:
                await flush()
                progress(f"loaded {size:,} events")
        if event_rows:
            await flush()
        # The subject's final state, as its last event left it.
        await connection.execute(
            "UPDATE consent_records SET opted_in = $1, opted_in_at = $2, opted_out_at = $3, "
            "updated_at = $4, event_count = $5, last_leaf_hash = $6 WHERE org_id = $7 AND id = $8",
            subject_opted_in,
            subject_opted_in_at,
            None if subject_opted_in else subject_last,
            subject_last,
            subject_events,
            subject_head,
            org,
            subject,
        )
        await connection.execute(
            "INSERT INTO log_heads (org_id, size, frontier, updated_at) VALUES ($1, $2, $3, now())",
            org,
            size,
            b"".join(frontier),
        )
        return subject
    finally:
        await connection.close()


def _json(value: Any) -> str | None:
    import json

    return None if value is None else json.dumps(value)


def _change(phone: uuid.UUID, contact: str) -> ConsentChange:
    return ConsentChange(
        phone_number_id=phone,
        contact_number=contact,
        opted_in=True,
        occurred_at=datetime.now(UTC),
        consent_method="checkbox",
        source="api",
        reason="bench",
        evidence=EVIDENCE,
        actor={"type": "bench"},
    )


async def checkpoint_cost(
    database: Database, signer: Signer, org: uuid.UUID, phone: uuid.UUID, rounds: int
) -> float:
    """Median ms to sign a checkpoint after one more event."""
    samples = []
    for n in range(rounds):
        change = _change(phone, f"+1556{n:07d}")
        async with database.session(writes=True) as session:
            await record_changes(session, OrgScope(org), [(0, change)])
            await session.commit()
        async with database.session(writes=True) as session:
            started = time.perf_counter()
            await log.checkpoint(session, OrgScope(org), signer, "bench.local")
            await session.commit()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def small_org(database: Database, engine: Any, count: int) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = await create_tenant(engine, name="Small", number="+15550100002")
    changes = [(i, _change(tenant.phone_number_id, f"+1557{i:07d}")) for i in range(count)]
    async with database.session(writes=True) as session:
        await record_changes(session, OrgScope(tenant.org_id), changes)
        await session.commit()
    return tenant.org_id, tenant.phone_number_id


def packet_latency(base_url: str, key: str, subject: uuid.UUID, rounds: int) -> list[float]:
    headers = {"Authorization": f"Bearer {key}"}
    samples = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        vkey = next(
            k["vkey"] for k in client.get("/.well-known/agentmessage/log-keys").json()["keys"]
            if k["current"]
        )  # fmt: skip
        first = client.get(f"/v1/consent/{subject}/proof")  # signs the first checkpoint
        first.raise_for_status()
        packet = first.json()
        checks = verify_packet(packet, parse_vkey(vkey))
        failed = [c.line() for c in checks if not c.ok]
        if failed or len(packet["events"]) != SUBJECT_EVENTS:
            raise RuntimeError(f"the packet does not verify: {failed}")
        for _ in range(rounds):
            started = time.perf_counter()
            response = client.get(f"/v1/consent/{subject}/proof")
            response.json()
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return samples


async def bench(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    with scratch_database("postgresql", workdir, "proof") as url:
        async with migrated_engine(url) as engine:
            tenant = await create_tenant(engine)
            started = time.perf_counter()
            subject = await load(
                url, tenant.org_id, tenant.phone_number_id, "+15550100000", args.events
            )
            progress(f"loaded in {time.perf_counter() - started:,.0f} s")
            await analyze(engine)
            database = Database(engine)
            # The key the server will load from its data directory.
            signer = load_or_create(workdir / "signing_key.pem")
            small, small_phone = await small_org(database, engine, 1_000)
            cost_small = await checkpoint_cost(database, signer, small, small_phone, 30)
            cost_big = await checkpoint_cost(
                database, signer, tenant.org_id, tenant.phone_number_id, 30
            )
            progress("checkpoints timed")
            started = time.perf_counter()
            report = await audit(database, OrgScope(tenant.org_id))
            audit_s = time.perf_counter() - started
            if not report.ok:
                raise RuntimeError(f"audit failed: {report.problems[:3]}")
            progress("audit done")
        with running_server(url, workdir) as server:
            samples = packet_latency(server.base_url, tenant.key, subject, args.rounds)
    p50 = statistics.median(samples)
    p99 = percentile(samples, 99)
    events = f"{args.events:,} events"
    return [
        Figure(
            "proof packet, 100 events (GET /v1/consent/{id}/proof)",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            size=events,
            detail=f"{len(samples)} requests",
            target="p50 <= 50 ms",
            met=p50 <= 50,
        ),
        Figure("checkpoint after 1 event", f"{cost_small:.2f} ms", size="1,000 leaves"),
        Figure(
            "checkpoint after 1 event",
            f"{cost_big:.2f} ms",
            size=f"{args.events:,} leaves",
            detail=f"{cost_big / cost_small:.2f}x of 1,000 leaves",
        ),
        Figure(
            "proof audit (whole log)",
            f"{report.leaves / audit_s:,.0f} leaves/s",
            size=f"{report.leaves:,} leaves",
            detail=f"{audit_s:,.1f} s",
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="agentmessage-bench-") as workdir:
        return asyncio.run(bench(args, Path(workdir)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    if args.events < SUBJECT_EVENTS:
        parser.error(f"--events must be at least {SUBJECT_EVENTS}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    print(f"Proof log on PostgreSQL, {args.events:,} events in one organization\n")
    print(figures_table(rows))


if __name__ == "__main__":
    main()
