"""The tamper matrix: an attacker with database access disables the triggers and
edits the tables directly. Each edit must make the affected contact's packet fail
the offline verifier (run alone in a subprocess, with only the packet and the
public key), leave other contacts' packets verifying, and make `proof audit`
name where the log diverges."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from tests.fixtures.verifier import run_alone

from agentmessage.auth.service import OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.db.engine import Database
from agentmessage.db.models import (
    ConsentEvent,
    ConsentRecord,
    LogCheckpoint,
    LogHead,
    LogLeaf,
)
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.proof import log, merkle
from agentmessage.proof.audit import audit
from agentmessage.proof.keys import signer_from_private_key
from agentmessage.proof.service import packet
from agentmessage.proof.verify import verify_packet

PREFIX = "consent.example.test"
SIGNER = signer_from_private_key(Ed25519PrivateKey.generate())
ATTACKER = signer_from_private_key(Ed25519PrivateKey.generate())
PROTECTED = ("consent_events", "log_leaves", "log_checkpoints")


@dataclass
class World:
    database: Database
    org: OrgScope
    number_id: Any
    contacts: dict[str, Any] = field(default_factory=dict)  # name -> consent id


def change(world: World, contact: str, opted_in: bool, minutes: int) -> ConsentChange:
    return ConsentChange(
        phone_number_id=world.number_id,
        contact_number=contact,
        opted_in=opted_in,
        occurred_at=utcnow() - timedelta(days=1) + timedelta(minutes=minutes),
        consent_method="checkbox",
        source="api",
        reason="test",
        evidence={"ip_address": "203.0.113.7", "agreement_text": "Reply STOP to cancel."},
        actor={"type": "test"},
        refuse_stale=False,
    )


async def record(world: World, name: str, contact: str, opted_in: bool, minutes: int) -> None:
    async with world.database.session(writes=True) as session:
        result = await record_changes(
            session, world.org, [(0, change(world, contact, opted_in, minutes))]
        )
        world.contacts[name] = result.accepted[0].record.id
        await session.commit()


async def seed(database: Database) -> World:
    """alice: in, out, in; bob: in; carol: in, out. Interleaved: leaves 0..5."""
    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Tamper Dental", plan="growth")
        number = await create_phone_number(session, org_id=org.id, number="+15550100001")
        await session.commit()
    world = World(database, OrgScope(org.id), number.id)
    await record(world, "alice", "+15554440001", True, 1)  # leaf 0
    await record(world, "bob", "+15554440002", True, 2)  # leaf 1
    await record(world, "alice", "+15554440001", False, 3)  # leaf 2
    await record(world, "carol", "+15554440003", True, 4)  # leaf 3
    await record(world, "alice", "+15554440001", True, 5)  # leaf 4
    await record(world, "carol", "+15554440003", False, 6)  # leaf 5
    await checkpoint(world)
    return world


async def checkpoint(world: World) -> str:
    async with world.database.session(writes=True) as session:
        made = await log.checkpoint(session, world.org, SIGNER, PREFIX)
        await session.commit()
        return made.note


async def packet_of(world: World, name: str, since: int | None = None) -> dict[str, Any]:
    async with world.database.session(writes=True) as session:
        built = await packet(session, world.org, world.contacts[name], SIGNER, PREFIX, since=since)
        await session.commit()
        return built


async def as_attacker(database: Database, *statements: Any) -> None:
    """Run statements with the append-only triggers out of the way."""
    async with database.session(writes=True) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        for table in PROTECTED:
            if postgres:
                await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                for action in ("update", "delete"):
                    await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        for statement in statements:
            await session.execute(statement)
        if postgres:
            for table in PROTECTED:
                await session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        await session.commit()


def run_verifier(
    tmp_path: Path, packet: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    """The verifier copied out alone, run with only the packet and the public key."""
    return run_alone(tmp_path, packet, SIGNER.public.vkey, *extra)


def failing(packet: dict[str, Any], saved: str | None = None) -> list[str]:
    return [c.line() for c in verify_packet(packet, SIGNER.public, saved) if not c.ok]


async def event_ids(world: World, name: str) -> list[Any]:
    async with world.database.session(writes=False) as session:
        rows = await session.execute(
            select(LogLeaf.event_id)
            .where(LogLeaf.org_id == world.org, LogLeaf.consent_id == world.contacts[name])
            .order_by(LogLeaf.leaf_index)
        )
        return [row.event_id for row in rows]


async def test_untouched_log_verifies_alone_and_audits_clean(
    database: Database, tmp_path: Path
) -> None:
    world = await seed(database)
    for name in ("alice", "bob", "carol"):
        done = run_verifier(tmp_path, await packet_of(world, name))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "VERIFIED" in done.stdout
    report = await audit(database, world.org)
    assert report.ok and report.leaves == 6, report.problems


async def test_one_changed_byte_of_evidence(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    second = (await event_ids(world, "alice"))[1]  # leaf 2
    forged = {"ip_address": "203.0.113.8", "agreement_text": "Reply STOP to cancel."}
    await as_attacker(
        database,
        update(ConsentEvent).where(ConsentEvent.id == second).values(evidence=forged),
    )
    done = run_verifier(tmp_path, await packet_of(world, "alice"))
    assert done.returncode == 1
    assert "FAIL  event 2 (opt_out" in done.stdout and "leaf 2 is not in" in done.stdout
    assert failing(await packet_of(world, "bob")) == []
    report = await audit(database, world.org)
    assert report.first_bad_leaf == 2, report.problems
    assert report.problems[0].startswith("leaf 2: event")


async def test_a_packet_after_the_public_url_changed(database: Database, tmp_path: Path) -> None:
    """Not an attack: the latest checkpoint was signed when the service had another
    public URL. The packet's record head names the tree as that checkpoint does."""
    world = await seed(database)
    await record(world, "bob", "+15554440002", False, 7)
    async with world.database.session(writes=True) as session:
        await log.checkpoint(session, world.org, SIGNER, "moved.example.test")
        await session.commit()
    done = run_verifier(tmp_path, await packet_of(world, "bob"))
    assert done.returncode == 0, done.stdout
    assert "moved.example.test/log/" in done.stdout


async def test_a_record_flipped_back_to_opted_in(database: Database, tmp_path: Path) -> None:
    """The record row is no append-only history: the attacker opts carol back in
    there, leaving her events alone."""
    world = await seed(database)
    await as_attacker(
        database,
        update(ConsentRecord)
        .where(ConsentRecord.id == world.contacts["carol"])
        .values(opted_in=True, opted_out_at=None),
    )
    done = run_verifier(tmp_path, await packet_of(world, "carol"))
    assert done.returncode == 1
    assert "FAIL  record state: opted_in is True but its events make it False" in done.stdout
    assert failing(await packet_of(world, "alice")) == []
    report = await audit(database, world.org)
    assert report.problems == [
        f"record {world.contacts['carol']}: opted_in, opted_out_at differ from what its "
        "events leave"
    ]
    assert report.first_bad_leaf == 5


async def test_a_record_head_moved_back(database: Database, tmp_path: Path) -> None:
    """The attacker sets alice's head back one event, so that her next event would
    name the one before her last revocation: the audit sees the head disagree."""
    world = await seed(database)
    async with database.session(writes=False) as session:
        second = await session.scalar(
            select(LogLeaf.hashes).where(LogLeaf.org_id == world.org, LogLeaf.leaf_index == 2)
        )
    await as_attacker(
        database,
        update(ConsentRecord)
        .where(ConsentRecord.id == world.contacts["alice"])
        .values(event_count=2, last_leaf_hash=second[:32]),
    )
    report = await audit(database, world.org)
    assert report.problems == [
        f"record {world.contacts['alice']}: its head says 2 events, the log holds 3"
    ]


async def test_a_deleted_event(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    first = (await event_ids(world, "alice"))[0]  # leaf 0
    await as_attacker(database, delete(ConsentEvent).where(ConsentEvent.id == first))
    done = run_verifier(tmp_path, await packet_of(world, "alice"))
    assert done.returncode == 1
    assert "leaf 0 of this record has no event: it was deleted" in done.stdout
    assert failing(await packet_of(world, "carol")) == []
    report = await audit(database, world.org)
    assert report.first_bad_leaf == 0
    assert report.problems[0] == f"leaf 0: its event {first} is missing"


async def test_a_forged_event_inserted_in_the_middle(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    async with database.session(writes=False) as session:
        events = (
            await session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.consent_id == world.contacts["carol"])
                .order_by(ConsentEvent.created_at)
            )
        ).all()
    forged_id = new_id()
    middle = events[0].created_at + (events[1].created_at - events[0].created_at) / 2
    await as_attacker(
        database,
        ConsentEvent.__table__.insert().values(
            org_id=world.org,
            id=forged_id,
            consent_id=world.contacts["carol"],
            type="opt_in",
            consent_method="checkbox",
            source="api",
            reason="forged",
            evidence={"ip_address": "198.51.100.1"},
            actor={"type": "test"},
            occurred_at=middle,
            created_at=middle,
        ),
    )
    done = run_verifier(tmp_path, await packet_of(world, "carol"))
    assert done.returncode == 1
    assert f"({'opt_in'}, {forged_id}): is in no leaf of the log" in done.stdout
    assert failing(await packet_of(world, "alice")) == []
    report = await audit(database, world.org)
    assert not report.ok
    assert report.problems == [f"event {forged_id} (recorded {middle}) is in no leaf of the log"]


async def test_two_events_swapped(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    a, b = (await event_ids(world, "alice"))[:2]  # leaves 0 and 2: in, out
    async with database.session(writes=False) as session:
        first = await session.get(ConsentEvent, (world.org, a))
        second = await session.get(ConsentEvent, (world.org, b))
        assert first is not None and second is not None
        swap = {
            a: {"type": second.type, "occurred_at": second.occurred_at},
            b: {"type": first.type, "occurred_at": first.occurred_at},
        }
    await as_attacker(
        database,
        *(update(ConsentEvent).where(ConsentEvent.id == k).values(**v) for k, v in swap.items()),
    )
    done = run_verifier(tmp_path, await packet_of(world, "alice"))
    assert done.returncode == 1
    assert "FAIL  event 1 (opt_out" in done.stdout and "FAIL  event 2 (opt_in" in done.stdout
    assert failing(await packet_of(world, "bob")) == []
    report = await audit(database, world.org)
    assert report.first_bad_leaf == 0


async def test_a_checkpoint_resigned_with_another_key(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    async with database.session(writes=False) as session:
        stored = await log.latest_checkpoint(session, world.org)
        assert stored is not None
        body = stored.note.split("\n\n")[0] + "\n"
    await as_attacker(
        database,
        update(LogCheckpoint)
        .where(LogCheckpoint.org_id == world.org)
        .values(note=ATTACKER.sign_note(body), key_id=ATTACKER.key_id),
    )
    done = run_verifier(tmp_path, await packet_of(world, "bob"))
    assert done.returncode == 1
    assert "FAIL  checkpoint signature: not signed by agentmessage-consent" in done.stdout
    report = await audit(database, world.org)
    assert report.problems == ["checkpoint at size 6: not signed by any published log key"]
    assert report.first_bad_leaf == 5


async def test_a_log_rolled_back_to_an_earlier_state(database: Database, tmp_path: Path) -> None:
    world = await seed(database)
    await record(world, "carol", "+15554440003", True, 7)  # leaf 6
    await record(world, "dave", "+15554440004", True, 8)  # leaf 7
    saved = await checkpoint(world)  # the customer keeps this one: 8 leaves
    (tmp_path / "saved.txt").write_text(saved)

    # Roll back to 6 leaves: carol's re-opt-in and dave never happened.
    async with database.session(writes=False) as session:
        stored = await log.nodes(session, world.org, [(2, 0), (1, 2)])
        recent = (
            await session.execute(
                select(LogLeaf.event_id, LogLeaf.consent_id).where(
                    LogLeaf.org_id == world.org, LogLeaf.leaf_index >= 6
                )
            )
        ).all()
    frontier = stored[(2, 0)] + stored[(1, 2)]  # the 6-leaf tree: 4 + 2
    await as_attacker(
        database,
        delete(LogLeaf).where(LogLeaf.org_id == world.org, LogLeaf.leaf_index >= 6),
        delete(LogCheckpoint).where(LogCheckpoint.org_id == world.org, LogCheckpoint.tree_size > 6),
        delete(ConsentEvent).where(ConsentEvent.id.in_([r.event_id for r in recent])),
        update(LogHead).where(LogHead.org_id == world.org).values(size=6, frontier=frontier),
        update(ConsentRecord)
        .where(ConsentRecord.id == world.contacts["carol"])
        .values(opted_in=False),
    )
    assert merkle.root(merkle.split_frontier(frontier)) != b""
    rolled = await packet_of(world, "carol")
    assert rolled["tree_size"] == 6
    done = run_verifier(tmp_path, rolled, "--checkpoint", str(tmp_path / "saved.txt"))
    assert done.returncode == 1
    assert "has 8 leaves but the packet's only 6: the log was rolled back" in done.stdout
    # Without the saved checkpoint nothing in the database betrays it; with it,
    # the audit names the first leaf that went missing.
    assert failing(await packet_of(world, "bob")) == []
    report = await audit(database, world.org, saved_checkpoint=saved)
    assert report.first_bad_leaf == 6
    assert "rolled back" in report.problems[0]


@pytest.mark.parametrize("writers", [50])
async def test_racing_writers_get_gap_free_leaves_in_commit_order(
    database: Database, writers: int
) -> None:
    import asyncio

    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Race", plan="growth")
        number = await create_phone_number(session, org_id=org.id, number="+15550100009")
        await session.commit()
    world = World(database, OrgScope(org.id), number.id)

    async def writer(n: int) -> None:
        async with database.session(writes=True) as session:
            await record_changes(
                session,
                world.org,
                [
                    (0, change(world, f"+1555444{n:04d}", True, n)),
                    (1, change(world, f"+1555445{n:04d}", True, n)),
                ],
            )
            await session.commit()

    await asyncio.gather(*(writer(n) for n in range(writers)))
    async with database.session(writes=False) as session:
        indexes = list(
            await session.scalars(
                select(LogLeaf.leaf_index)
                .where(LogLeaf.org_id == world.org)
                .order_by(LogLeaf.leaf_index)
            )
        )
        head = await log.head(session, world.org)
    assert indexes == list(range(2 * writers))
    assert head.size == 2 * writers
    # The root from the head's frontier equals a recomputation from the events.
    report = await audit(database, world.org)
    assert report.ok, report.problems
    assert report.leaves == 2 * writers


async def _session_dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name
