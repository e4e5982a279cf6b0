"""The schema: migrations equal the models, history is append-only, tenancy leads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from agentmessage.db.base import Base
from agentmessage.db.models import PhoneNumber
from tests.fixtures.builders import make_record


async def test_migrations_build_exactly_the_models(connection):
    def diff(sync_connection):
        context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    assert await connection.run_sync(diff) == []


async def test_every_table_primary_key_and_unique_index_leads_with_org_id(connection):
    def shape(sync_connection):
        inspector = inspect(sync_connection)
        found = {}
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            found[table] = (
                inspector.get_pk_constraint(table)["constrained_columns"],
                [u["column_names"] for u in inspector.get_unique_constraints(table)]
                + [i["column_names"] for i in inspector.get_indexes(table) if i["unique"]],
            )
        return found

    tables = await connection.run_sync(shape)
    for table, (primary_key, uniques) in tables.items():
        if table == "organizations":
            assert primary_key == ["id"]  # the organization id itself
            continue
        if table == "log_keys":
            # The server's signing keys belong to no organization: a small
            # reference table (replicated to every node under Citus).
            assert primary_key == ["key_id"]
            continue
        assert primary_key[0] == "org_id", table
        if table == "phone_numbers":
            # A number belongs to one organization across the service, and inbound
            # SMS look it up before the organization is known: a reference table.
            assert ["number"] in uniques
            uniques.remove(["number"])
        assert all(columns[0] == "org_id" for columns in uniques), table


async def test_a_sender_number_belongs_to_one_organization(session, tenant, other_tenant):
    # The database holds the rule even for a writer that skips the service's check.
    session.add(
        PhoneNumber(
            org_id=other_tenant.org_id,
            number=tenant.number.number,
            created_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
    )
    with pytest.raises(IntegrityError):
        async with session.begin_nested():
            await session.flush()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_events SET reason = 'forged'",
        "DELETE FROM consent_events",
    ],
)
async def test_history_is_append_only_in_the_database_itself(
    connection, session, tenant, statement
):
    await make_record(session, tenant)
    await session.commit()
    savepoint = await connection.begin_nested()
    with pytest.raises(DBAPIError, match="append-only"):
        await connection.execute(text(statement))
    await savepoint.rollback()
    count = await connection.scalar(text("SELECT count(*) FROM consent_events"))
    assert count >= 1


async def test_the_list_query_is_an_index_range_scan(connection, session, tenant, backend):
    """The default order and each filter are served by an index, not a sort of the table."""
    for _ in range(30):
        await make_record(session, tenant)
    await session.commit()
    org = tenant.org_id.hex if backend == "sqlite" else str(tenant.org_id)
    at = "2030-01-01 00:00:00.000000" if backend == "sqlite" else datetime(2030, 1, 1, tzinfo=UTC)
    queries = [
        "SELECT id FROM consent_records WHERE org_id = :org "
        "ORDER BY updated_at DESC, id DESC LIMIT 21",
        "SELECT id FROM consent_records WHERE org_id = :org AND opted_in = true "
        "ORDER BY updated_at DESC, id DESC LIMIT 21",
        "SELECT id FROM consent_records WHERE org_id = :org AND consent_method = 'written' "
        "ORDER BY updated_at DESC, id DESC LIMIT 21",
        "SELECT id FROM consent_records WHERE org_id = :org AND contact_number = '+15550000001' "
        "ORDER BY updated_at DESC, id DESC LIMIT 21",
        # A deep page: the keyset condition is part of the same range scan.
        "SELECT id FROM consent_records WHERE org_id = :org "
        "AND (updated_at, id) < (:at, :org) ORDER BY updated_at DESC, id DESC LIMIT 21",
    ]
    for query in queries:
        if backend == "sqlite":
            rows = await connection.execute(
                text("EXPLAIN QUERY PLAN " + query), {"org": org, "at": at}
            )
            plan = " ".join(str(row[-1]) for row in rows)
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            # Tiny tables make a sort cheap; penalize it so the plan shows whether
            # an index can deliver the order at all (it sorts anyway if none can).
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await connection.execute(text(f"SET LOCAL {setting} = off"))
            rows = await connection.execute(text("EXPLAIN " + query), {"org": org, "at": at})
            plan = " ".join(row[0] for row in rows)
            assert "Index" in plan, plan
            assert "Sort" not in plan, plan
