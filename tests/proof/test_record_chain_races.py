"""Many writers change one contact at once, each on its own connection and
transaction: its chain stays whole (each event names the one committed before
it), the audit finds nothing, and its packet verifies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from agentmessage.auth.service import OrgScope
from agentmessage.consent.changes import ConsentChange, record_changes
from agentmessage.db.engine import Database
from agentmessage.db.models import ConsentRecord
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.proof.audit import audit
from agentmessage.proof.keys import signer_from_private_key
from agentmessage.proof.service import packet
from agentmessage.proof.verify import verify_packet

SIGNER = signer_from_private_key(Ed25519PrivateKey.generate())
WRITERS = 24


async def test_concurrent_changes_of_one_contact_keep_its_chain_whole(database: Database):
    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Race Dental", plan="growth")
        number = await create_phone_number(session, org_id=org.id, number="+15550100001")
        await session.commit()
    scope, start = OrgScope(org.id), datetime(2030, 1, 1, tzinfo=UTC)

    async def write(n: int) -> None:
        change = ConsentChange(
            phone_number_id=number.id,
            contact_number="+15554449001",
            opted_in=n % 2 == 0,
            occurred_at=start + timedelta(seconds=n),
            consent_method="checkbox" if n % 2 == 0 else None,
            source="api",
            reason="race",
            evidence=None,
            actor={"type": "test"},
            refuse_stale=False,
        )
        async with database.session(writes=True) as session:
            await record_changes(session, scope, [(0, change)])
            await session.commit()

    await write(0)  # the record exists; the rest race on it
    await asyncio.gather(*(write(n) for n in range(1, WRITERS)))

    report = await audit(database, scope)
    assert report.ok and report.leaves == WRITERS, report.problems
    async with database.session(writes=True) as session:
        consent_id = await session.scalar(select(ConsentRecord.id))
        built = await packet(session, scope, consent_id, SIGNER, "race.example.test")
        await session.commit()
    assert [e["event"]["sequence"] for e in built["events"]] == list(range(1, WRITERS + 1))
    assert [c.line() for c in verify_packet(built, SIGNER.public) if not c.ok] == []
