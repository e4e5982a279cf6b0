"""Crash safety (issue 7, item 4): the real server is killed with SIGKILL in the middle
of a stream of bulk captures, then started again on the same database.

What a client was told must hold afterwards: every record of a call that got its 200
is there with that call's history event, and every call is all or nothing (a bulk
call is one transaction). Never a record without its event, a contact with two
records, an event twice, or an event missing from the proof log.

PostgreSQL runs with fsync on here (the suite's shared cluster runs without it): a
commit acknowledged to the server must be durable for this test to mean anything.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from bench.common import running_server
from sqlalchemy import func, select

from agentmessage.auth.keys import SCOPES
from agentmessage.auth.service import create_key
from agentmessage.db.engine import Database, async_url, create_engine
from agentmessage.db.migrate import upgrade_to_head
from agentmessage.db.models import ConsentEvent, ConsentRecord, LogLeaf
from agentmessage.orgs.service import create_organization, create_phone_number
from tests.fixtures.postgres import PostgresCluster, cluster_for_tests

RECORDS_PER_CALL = 40
WORKERS = 4
ACKS_BEFORE_THE_KILL = 12
# Calls reuse contacts: a later call updates records earlier calls created.
CONTACTS = 600


@pytest.fixture(scope="module")
def durable_postgres() -> Iterator[PostgresCluster]:
    yield from cluster_for_tests(fsync=True)


@dataclass(frozen=True, slots=True)
class Org:
    org_id: uuid.UUID
    phone_number_id: uuid.UUID
    key: str


async def setup(url: str) -> Org:
    database = Database(create_engine(async_url(url), pool_size=2))
    try:
        await upgrade_to_head(database.engine)
        async with database.engine.connect() as connection:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                value = (await connection.exec_driver_sql(f"SHOW {setting}")).scalar()
                assert value == "on", (setting, value)
        async with database.session(writes=True) as session:
            org = await create_organization(
                session, name="Crash Org", plan="growth", rate_limit_per_minute=1_000_000
            )
            number = await create_phone_number(session, org_id=org.id, number="+15550100000")
            key = await create_key(session, org_id=org.id, scopes=SCOPES)
            await session.commit()
        return Org(org.id, number.id, key.plain)
    finally:
        await database.dispose()


def call_url(call: int) -> str:
    """The evidence's form_url names the call, so its events can be found again."""
    return f"https://example.com/signup?call={call}"


def bulk_body(org: Org, call: int) -> dict[str, object]:
    first = (call * 17) % CONTACTS
    contacts = [f"+1555300{(first + i) % CONTACTS:04d}" for i in range(RECORDS_PER_CALL)]
    return {
        "records": [
            {
                "phone_number_id": str(org.phone_number_id),
                "contact_number": contact,
                "opted_in": True,
                "evidence": {
                    "captured_at": "2026-04-26T12:00:00Z",
                    "consent_method": "checkbox",
                    "agreement_text": "Reminders from Crash Org. Reply STOP to opt out.",
                    "form_url": call_url(call),
                },
            }
            for contact in contacts
        ]
    }


@dataclass
class Stream:
    """Bulk calls sent by several workers until the server dies."""

    org: Org
    base_url: str
    acknowledged: dict[int, list[str]] = field(default_factory=dict)
    sent: dict[int, list[str]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_call: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def take(self) -> int:
        with self.lock:
            self.next_call += 1
            return self.next_call

    def work(self) -> None:
        headers = {"Authorization": f"Bearer {self.org.key}"}
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                call = self.take()
                body = bulk_body(self.org, call)
                contacts = [str(r["contact_number"]) for r in body["records"]]  # type: ignore[index]
                with self.lock:
                    self.sent[call] = contacts
                try:
                    r = client.post("/v1/consent/bulk", json=body, headers=headers)
                except httpx.TransportError as exc:
                    with self.lock:
                        self.failures[type(exc).__name__] += 1
                    return  # the server is gone
                assert r.status_code == 200, r.text
                assert r.json() == {"accepted": RECORDS_PER_CALL, "rejected": []}
                with self.lock:
                    self.acknowledged[call] = contacts


async def read_back(url: str, org: Org) -> tuple[list[ConsentRecord], list[ConsentEvent], list]:
    database = Database(create_engine(async_url(url), pool_size=2))
    try:
        async with database.session(writes=False) as session:
            records = list(
                await session.scalars(
                    select(ConsentRecord).where(ConsentRecord.org_id == org.org_id)
                )
            )
            events = list(
                await session.scalars(select(ConsentEvent).where(ConsentEvent.org_id == org.org_id))
            )
            leaves = list(
                await session.execute(
                    select(LogLeaf.leaf_index, LogLeaf.event_id).where(LogLeaf.org_id == org.org_id)
                )
            )
            assert await session.scalar(select(func.count()).select_from(ConsentRecord)) == len(
                records
            )
        return records, events, leaves
    finally:
        await database.dispose()


async def test_sigkill_mid_stream_loses_nothing_acknowledged(durable_postgres, tmp_path: Path):
    started = time.monotonic()
    url = durable_postgres.create_database("crash")
    org = await setup(url)
    workdir = tmp_path / "server"
    workdir.mkdir()

    with running_server(url, workdir) as server:
        stream = Stream(org, server.base_url)
        workers = [threading.Thread(target=stream.work) for _ in range(WORKERS)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 30
        while len(stream.acknowledged) < ACKS_BEFORE_THE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)
        stream.stop.set()
        for worker in workers:
            worker.join(timeout=20)
        assert not any(w.is_alive() for w in workers)

    assert len(stream.acknowledged) >= ACKS_BEFORE_THE_KILL, "the stream never got going"
    in_flight = set(stream.sent) - set(stream.acknowledged)
    assert in_flight, "the kill hit no call in flight"
    assert sum(stream.failures.values()) == len(in_flight)

    # Started again on the same database: it serves, and what it says agrees.
    with running_server(url, workdir) as server, httpx.Client(base_url=server.base_url) as client:
        headers = {"Authorization": f"Bearer {org.key}"}
        after = client.post("/v1/consent/bulk", json=bulk_body(org, 10_000), headers=headers)
        assert after.status_code == 200, after.text
        listed = client.get("/v1/consent", params={"limit": 1}, headers=headers).json()

    records, events, leaves = await read_back(url, org)
    by_contact = Counter(r.contact_number for r in records)
    assert [c for c, n in by_contact.items() if n > 1] == []  # no contact twice
    assert listed["meta"]["total"] == len(records)
    record_of = {r.id: r.contact_number for r in records}
    # No record without its event, no event without its record.
    assert {e.consent_id for e in events} == set(record_of)
    # No event twice: one per contact and call.
    events_of_call: dict[str, list[str]] = defaultdict(list)
    for event in events:
        events_of_call[event.evidence["form_url"]].append(record_of[event.consent_id])
    for call_url_, contacts in events_of_call.items():
        assert len(contacts) == len(set(contacts)), call_url_
    # Every acknowledged call is there in full, with its events.
    for call, contacts in stream.acknowledged.items():
        assert sorted(events_of_call[call_url(call)]) == sorted(contacts), call
    # A call cut short by the kill is all or nothing.
    for call in in_flight:
        assert sorted(events_of_call.get(call_url(call), [])) in ([], sorted(stream.sent[call]))
    # Each event is one leaf of the proof log, the indexes without a gap.
    assert sorted(event_id for _, event_id in leaves) == sorted(e.id for e in events)
    assert sorted(index for index, _ in leaves) == list(range(len(leaves)))
    assert time.monotonic() - started < 60
