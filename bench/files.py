"""File commands at scale, on PostgreSQL: `consents import` against the raw COPY
rate of the same rows into the same tables, its peak memory, `consents export`
rows/s, and a deactivation feed.

    .venv/bin/python bench/files.py [--rows 1000000]

The import runs as a user runs it (the CLI in a subprocess, plain progress lines);
COPY is the physical floor: rows (and their proof-log leaves) prepared in memory
beforehand, then `COPY consent_records`, `consent_events` and `log_leaves` in one
transaction, no validation, no checkpoints, no upsert logic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database
from agentmessage.files.exporter import COLUMNS
from agentmessage.kit.ids import new_id
from agentmessage.proof import log, merkle
from bench.common import (
    Figure,
    copy_tables,
    create_tenant,
    figures_table,
    migrated_engine,
    scratch_database,
)
from bench.make_consents_csv import BAD_EVERY, write_csv
from bench.make_consents_csv import rows as sample_rows

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))
SENDER = "+15550100001"


def run_cli(args: list[str], url: str, workdir: Path) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of one CLI command."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTMESSAGE_")},
        "AGENTMESSAGE_DATABASE_URL": url,
        "AGENTMESSAGE_DATA_DIR": str(workdir),
    }
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out_file:
        process = subprocess.Popen(
            [AGENTMESSAGE, *args], env=env, stdout=out_file, stderr=subprocess.DEVNULL
        )
        # VmHWM of the process itself. (getrusage/wait4 would also count the pages
        # the child shared with this process between fork and exec.)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _vm_hwm(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        out_file.seek(0)
        out = out_file.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed with exit {process.returncode}")
    return elapsed, peak, out


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def copy_rows(
    count: int, org_id: uuid.UUID, phone_id: uuid.UUID, size: int, frontier: list[bytes]
) -> tuple[list[Any], list[Any], list[Any]]:
    """The records, events and log leaves the import would write, for contacts it does
    not touch; the leaves continue the log from ``size`` (``frontier`` is updated)."""
    now = datetime.now(UTC)
    records, events, leaves = [], [], []
    for i, values in enumerate(sample_rows(count, SENDER, seed=11, first_contact=5_000_000)):
        if i % BAD_EVERY == BAD_EVERY - 1:
            continue  # the rows the import rejects
        row = dict(zip(COLUMNS, values, strict=True))
        contact, opted_in, captured_at = row["contact_number"], row["opted_in"], row["captured_at"]
        method, agreement = row["consent_method"], row["agreement_text"]
        ip, agent, url = row["ip_address"], row["user_agent"], row["form_url"]
        at = (
            datetime.fromisoformat(captured_at.replace("Z", "+00:00"))
            if "T" in captured_at
            else now
        )
        record_id = new_id()
        evidence = {
            "captured_at": captured_at, "consent_method": method, "agreement_text": agreement,
            "ip_address": ip, "user_agent": agent, "form_url": url,
        }  # fmt: skip
        event_id, kind, actor = (
            new_id(),
            "opt_in" if opted_in == "true" else "opt_out",
            {"type": "bench"},
        )
        events.append(
            (org_id, event_id, record_id, kind, method,
             "api", "import:csv", json.dumps(evidence), json.dumps(actor), at, now, 1, None)
        )  # fmt: skip
        document = log.event_document(
            org_id=org_id, event_id=event_id, consent_id=record_id, phone_number_id=phone_id,
            contact_number=contact, type=kind, consent_method=method, source="api",
            reason="import:csv", evidence=evidence, actor=actor, occurred_at=at, created_at=now,
            sender_number=SENDER, sequence=1, previous_leaf_hash=None,
        )  # fmt: skip
        leaf = merkle.leaf_hash(merkle.canonical_json(document))
        records.append(
            (org_id, record_id, phone_id, contact, opted_in == "true",
             at if opted_in == "true" else None, None if opted_in == "true" else at,
             "api", method, now, now, 1, leaf)
        )  # fmt: skip
        hashes = merkle.append(frontier, size, leaf)
        leaves.append((org_id, size, event_id, record_id, hashes))
        size += 1
    return records, events, leaves


async def raw_copy(
    url: str,
    records: list[Any],
    events: list[Any],
    leaves: list[Any],
    head: tuple[uuid.UUID, int, bytes],
) -> float:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        async with connection.transaction():
            await copy_tables(
                connection,
                {"consent_records": records, "consent_events": events, "log_leaves": leaves},
            )
            org_id, size, frontier = head
            await connection.execute(
                "UPDATE log_heads SET size = $1, frontier = $2 WHERE org_id = $3",
                size, frontier, org_id,
            )  # fmt: skip
        return time.perf_counter() - started
    finally:
        await connection.close()


async def bench(rows: int, workdir: Path) -> list[Figure]:
    with scratch_database("postgresql", workdir, "files") as url:
        async with migrated_engine(url) as engine:
            tenant = await create_tenant(engine, number=SENDER)
        csv_path = workdir / "consents.csv"
        bad = write_csv(csv_path, rows, SENDER)
        imported_s, import_rss, out = run_cli(
            ["consents", "import", str(csv_path), "--org", str(tenant.org_id)], url, workdir
        )
        summary = json.loads(out)
        if summary["accepted"] != rows - bad or summary["rejected"] != bad:
            raise RuntimeError(f"the import did not judge every row as expected: {summary}")

        async with migrated_engine(url) as engine, Database(engine).session(writes=False) as s:
            before = await log.head(s, OrgScope(tenant.org_id))
        frontier = list(before.frontier)
        records, events, leaves = copy_rows(
            rows, tenant.org_id, tenant.phone_number_id, before.size, frontier
        )
        head = (tenant.org_id, before.size + len(leaves), b"".join(frontier))
        copy_s = await raw_copy(url, records, events, leaves, head)
        del records, events, leaves

        export_s, export_rss, _ = run_cli(
            ["consents", "export", "--org", str(tenant.org_id), "-o", str(workdir / "out.csv")],
            url,
            workdir,
        )
        exported = (rows - bad) * 2  # the imported rows and the copied ones
        feed = workdir / "feed.csv"
        with feed.open("w") as handle:
            handle.write("number,deactivated_at\n")
            for i in range(rows):
                handle.write(f"+1555{i:07d},2025-06-15\n")
        feed_s, feed_rss, feed_out = run_cli(["deactivations", "import", str(feed)], url, workdir)
        opted_out = json.loads(feed_out)["opted_out"]

    import_rate = (rows - bad) / imported_s
    copy_rate = (rows - bad) / copy_s
    ratio = import_rate / copy_rate
    mib = 1024 * 1024
    return [
        Figure(
            "consents import (CLI)",
            f"{import_rate:,.0f} rows/s",
            size=f"{rows:,} rows ({bad:,} bad)",
            detail=f"peak RSS {import_rss / mib:,.0f} MiB",
            target="peak RSS <= 300 MB",
            met=import_rss <= 300 * 1000 * 1000,
        ),
        Figure("raw COPY, same rows", f"{copy_rate:,.0f} rows/s", size=f"{rows - bad:,} rows"),
        Figure("import / COPY", f"{ratio:.0%}", target="import >= 40% of COPY", met=ratio >= 0.4),
        Figure(
            "consents export (CLI)",
            f"{exported / export_s:,.0f} rows/s",
            size=f"{exported:,} records",
            detail=f"peak RSS {export_rss / mib:,.0f} MiB",
        ),
        Figure(
            "deactivations import (CLI)",
            f"{rows / feed_s:,.0f} lines/s",
            size=f"{rows:,} lines, {opted_out:,} opted out",
            detail=f"peak RSS {feed_rss / mib:,.0f} MiB",
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="agentmessage-bench-") as workdir:
        return asyncio.run(bench(args.rows, Path(workdir)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    print(f"File commands on PostgreSQL, {args.rows:,} rows\n")
    print(figures_table(rows))


if __name__ == "__main__":
    main()
