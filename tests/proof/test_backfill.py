"""A database from before the proof log: its history becomes the first leaves."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy.engine import Connection
from tests.proof.test_tamper import PREFIX, SIGNER

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import alembic_config, upgrade_to_head
from agentmessage.db.models import ConsentEvent, ConsentRecord
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.proof.audit import audit
from agentmessage.proof.service import packet
from agentmessage.proof.verify import verify_packet

OLD_EVENT = {
    "consent_method": "checkbox",
    "source": "api",
    "reason": "old",
    "evidence": {"ip_address": "203.0.113.7", "attempt": 1},
    "actor": {"type": "old"},
}


def _upgrade_to(revision: str):  # type: ignore[no-untyped-def]
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


async def test_events_recorded_before_the_log_become_its_first_leaves(
    database_url_factory, request
) -> None:  # type: ignore[no-untyped-def]
    for backend in ("sqlite", "postgresql"):
        database = Database(create_engine(database_url_factory(backend)))
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(_upgrade_to("0006"))
            async with database.session(writes=True) as session:
                org = await create_organization(session, name="Old", plan="growth")
                number = await create_phone_number(session, org_id=org.id, number="+15550100001")
                at = utcnow() - timedelta(days=30)
                record = ConsentRecord(
                    org_id=org.id, id=new_id(), phone_number_id=number.id,
                    contact_number="+15554440001", opted_in=False, opted_in_at=at,
                    opted_out_at=at + timedelta(days=1), source="sms",
                    consent_method="checkbox", created_at=at, updated_at=at + timedelta(days=1),
                )  # fmt: skip
                session.add(record)
                await session.flush()
                for n, kind in enumerate(("opt_in", "opt_out")):
                    when = at + timedelta(days=n)
                    event = {"type": kind, "occurred_at": when, "created_at": when}
                    session.add(
                        ConsentEvent(
                            **OLD_EVENT, **event, org_id=org.id, consent_id=record.id, id=new_id()
                        )
                    )
                await session.commit()
            await upgrade_to_head(database.engine)

            report = await audit(database, OrgScope(org.id))
            assert report.ok and report.leaves == 2, report.problems
            async with database.session(writes=True) as session:
                built = await packet(session, OrgScope(org.id), record.id, SIGNER, PREFIX)
                await session.commit()
            assert [e["leaf_index"] for e in built["events"]] == [0, 1]
            checks = verify_packet(built, SIGNER.public)
            assert all(c.ok for c in checks), [c.line() for c in checks]
        finally:
            await database.dispose()
