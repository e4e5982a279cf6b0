"""A rotated signing key: the new one signs from now on, the old one stays published
and old checkpoints keep verifying with it."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tests.conftest import TestDatabase
from tests.fixtures.builders import Tenant, capture_body

from agentmessage.app import create_app
from agentmessage.proof.verify import parse_vkey, verify_packet
from agentmessage.settings import Settings


def client_for(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_old_keys_stay_published_after_a_rotation(
    engine: AsyncEngine, connection: AsyncConnection, tenant: Tenant, tmp_path: Path
) -> None:
    def settings(key_file: str) -> Settings:
        return Settings(
            data_dir=tmp_path,
            secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
            signing_key_file=tmp_path / key_file,
        )

    async with client_for(create_app(settings("old.pem"), TestDatabase(engine, connection))) as old:
        created = await old.post(
            "/v1/consent", json=capture_body(tenant, "+15554447001"), headers=tenant.headers
        )
        consent_id = created.json()["id"]
        old_packet = (
            await old.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)
        ).json()
    assert (tmp_path / "old.pem").stat().st_mode & 0o777 == 0o600

    new_app = create_app(settings("new.pem"), TestDatabase(engine, connection))
    async with client_for(new_app) as new:
        keys = (await new.get("/.well-known/agentmessage/log-keys")).json()["keys"]
        assert len(keys) == 2
        (current,) = [k for k in keys if k["current"]]
        (former,) = [k for k in keys if not k["current"]]
        assert former["key_id"] == old_packet["public_key"]["key_id"]
        old_key, new_key = parse_vkey(former["vkey"]), parse_vkey(current["vkey"])
        assert all(c.ok for c in verify_packet(old_packet, old_key))

        # The log has not grown: the stored checkpoint is the old key's, and the
        # packet, signed now, carries the same tree signed by the new key.
        same = (await new.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)).json()
        assert same["public_key"]["key_id"] == new_key.key_id
        assert (same["tree_size"], same["root_hash"]) == (
            old_packet["tree_size"],
            old_packet["root_hash"],
        )
        assert all(c.ok for c in verify_packet(same, new_key))
        assert not all(c.ok for c in verify_packet(same, old_key))

        await new.delete(f"/v1/consent/{consent_id}", headers=tenant.headers)
        grown = (await new.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)).json()
        assert grown["public_key"]["key_id"] == new_key.key_id
        assert all(c.ok for c in verify_packet(grown, new_key))
        assert not all(c.ok for c in verify_packet(grown, old_key))
