"""Checkpoints signed on GET while others write: on SQLite a read transaction that
later writes would fail at once if another writer committed in between."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from agentmessage.app import create_app
from agentmessage.auth.keys import SCOPES
from agentmessage.auth.service import create_key
from agentmessage.db.engine import Database
from agentmessage.orgs.service import create_organization, create_phone_number
from agentmessage.settings import Settings


async def test_checkpoints_signed_on_get_under_concurrent_writes(
    database: Database, tmp_path: Path
) -> None:
    async with database.session(writes=True) as session:
        org = await create_organization(session, name="Busy", plan="growth")
        number = await create_phone_number(session, org_id=org.id, number="+15550100001")
        key = await create_key(session, org_id=org.id, scopes=SCOPES)
        await session.commit()
    app = create_app(
        Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789"),  # type: ignore[arg-type]
        database,
    )
    headers = {"Authorization": f"Bearer {key.plain}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=headers
    ) as client:

        async def capture(n: int) -> int:
            body = {
                "phone_number_id": str(number.id),
                "contact_number": f"+1555444{n:04d}",
                "opted_in": True,
                "evidence": {
                    "captured_at": "2026-04-26T12:00:00Z",
                    "consent_method": "checkbox",
                    "agreement_text": "Reply STOP to opt out.",
                },
            }
            return (await client.post("/v1/consent", json=body)).status_code

        async def checkpoint() -> int:
            return (await client.get("/v1/proof/checkpoint")).status_code

        statuses = await asyncio.gather(*(capture(n) if n % 2 else checkpoint() for n in range(60)))
        assert sorted(set(statuses)) == [200, 201], statuses
        final = (await client.get("/v1/proof/checkpoint")).json()
        assert final["tree_size"] == 30
