"""A page of GET /v1/consent and its meta.total come from one snapshot, however
the records change between the two statements."""

from __future__ import annotations

from agentmessage.app import create_app
from agentmessage.consent.repository import ConsentRepository
from agentmessage.db.engine import Database
from agentmessage.settings import Settings
from tests.fixtures.builders import capture_body, make_tenant
from tests.reliability.conftest import client_for


async def test_the_total_counts_the_records_the_page_saw(
    database: Database, settings: Settings, monkeypatch
) -> None:
    async with database.session(writes=True) as session:
        tenant = await make_tenant(session)
    app = create_app(settings, database)
    async with client_for(app) as client:
        for i in range(3):
            body = capture_body(tenant, f"+1555444{i:04d}")
            r = await client.post("/v1/consent", json=body, headers=tenant.headers)
            assert r.status_code == 201, r.text

        count = ConsentRepository.count

        async def count_after_another_commit(self, org, filters):  # type: ignore[no-untyped-def]
            # Between the page and the count, another request commits a record.
            body = capture_body(tenant, "+15554449999")
            r = await client.post("/v1/consent", json=body, headers=tenant.headers)
            assert r.status_code == 201, r.text
            return await count(self, org, filters)

        monkeypatch.setattr(ConsentRepository, "count", count_after_another_commit)
        page = (await client.get("/v1/consent", headers=tenant.headers)).json()
        monkeypatch.setattr(ConsentRepository, "count", count)

        assert len(page["data"]) == 3
        assert page["meta"]["total"] == 3
        later = (await client.get("/v1/consent", headers=tenant.headers)).json()
        assert (len(later["data"]), later["meta"]["total"]) == (4, 4)
