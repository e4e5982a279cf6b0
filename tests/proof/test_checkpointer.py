"""The checkpointer signs every organization whose log grew, and only those."""

from __future__ import annotations

import asyncio

from tests.proof.test_tamper import PREFIX, SIGNER, record, seed

from agentmessage.db.engine import Database
from agentmessage.proof import log
from agentmessage.proof.service import Checkpointer
from agentmessage.proof.verify import parse_checkpoint, verify_note


async def test_signs_what_grew_then_nothing_until_it_grows_again(database: Database) -> None:
    world = await seed(database)  # seeding made a checkpoint at 6 leaves
    checkpointer = Checkpointer(database, SIGNER, PREFIX, interval=30)
    assert await checkpointer.run_once() == 0
    await record(world, "erin", "+15554440005", True, 9)
    assert await checkpointer.run_once() == 1
    assert await checkpointer.run_once() == 0
    async with database.session(writes=False) as session:
        latest = await log.latest_checkpoint(session, world.org)
    assert latest is not None and latest.tree_size == 7
    verify_note(latest.note, SIGNER.public)
    assert parse_checkpoint(latest.note).origin == f"{PREFIX}/log/{world.org}"


async def test_runs_as_a_task_and_stops_cleanly(database: Database) -> None:
    world = await seed(database)
    await record(world, "erin", "+15554440005", True, 9)
    checkpointer = Checkpointer(database, SIGNER, PREFIX, interval=0.05)
    checkpointer.start()
    for _ in range(100):
        async with database.session(writes=False) as session:
            latest = await log.latest_checkpoint(session, world.org)
        if latest is not None and latest.tree_size == 7:
            break
        await asyncio.sleep(0.05)
    await checkpointer.stop()
    assert latest is not None and latest.tree_size == 7
