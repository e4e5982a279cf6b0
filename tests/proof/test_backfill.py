"""A database from before the proof log: its history becomes the first leaves."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from tests.proof.test_tamper import PREFIX, SIGNER

from agentmessage.auth.service import OrgScope
from agentmessage.db.engine import Database, create_engine
from agentmessage.db.migrate import alembic_config, upgrade_to_head
from agentmessage.db.models import ConsentEvent, ConsentRecord, Organization, PhoneNumber
from agentmessage.kit.clock import utcnow
from agentmessage.kit.ids import new_id
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


def table(model: type) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


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
            # Rows written as at revision 0006: Core inserts naming only the
            # columns that revision has (today's models have more).
            org_id, number_id, record_id = new_id(), new_id(), new_id()
            at = utcnow() - timedelta(days=30)
            async with database.engine.begin() as connection:
                await connection.execute(
                    sa.insert(table(Organization)).values(
                        id=org_id, name="Old", plan="growth", created_at=at
                    )
                )
                await connection.execute(
                    sa.insert(table(PhoneNumber)).values(
                        org_id=org_id, id=number_id, number="+15550100001", created_at=at
                    )
                )
                await connection.execute(
                    sa.insert(table(ConsentRecord)).values(
                        org_id=org_id,
                        id=record_id,
                        phone_number_id=number_id,
                        contact_number="+15554440001",
                        opted_in=False,
                        opted_in_at=at,
                        opted_out_at=at + timedelta(days=1),
                        source="api",  # what its events left: the audit holds records to them
                        consent_method="checkbox",
                        created_at=at,
                        updated_at=at + timedelta(days=1),
                    )
                )
                for n, kind in enumerate(("opt_in", "opt_out")):
                    when = at + timedelta(days=n)
                    await connection.execute(
                        sa.insert(table(ConsentEvent)).values(
                            **OLD_EVENT,
                            type=kind,
                            occurred_at=when,
                            created_at=when,
                            org_id=org_id,
                            consent_id=record_id,
                            id=new_id(),
                        )
                    )
            await upgrade_to_head(database.engine)

            report = await audit(database, OrgScope(org_id))
            assert report.ok and report.leaves == 2, report.problems
            async with database.session(writes=True) as session:
                built = await packet(session, OrgScope(org_id), record_id, SIGNER, PREFIX)
                await session.commit()
            assert [e["leaf_index"] for e in built["events"]] == [0, 1]
            checks = verify_packet(built, SIGNER.public)
            assert all(c.ok for c in checks), [c.line() for c in checks]
        finally:
            await database.dispose()
