"""The proof endpoints, against the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from tests.fixtures.builders import Tenant, capture_body

from agentmessage.proof.verify import (
    PACKET_FORMAT,
    consistent,
    parse_checkpoint,
    parse_vkey,
    verify_note,
    verify_packet,
)


async def capture(client: httpx.AsyncClient, tenant: Tenant, contact: str, **kw: object) -> str:
    response = await client.post(
        "/v1/consent", json=capture_body(tenant, contact, **kw), headers=tenant.headers
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def log_key(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    keys = (await client.get("/.well-known/agentmessage/log-keys")).json()["keys"]
    (current,) = [k for k in keys if k["current"]]
    return parse_vkey(current["vkey"])


async def test_packet_of_a_contact_verifies_with_the_published_key(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await capture(client, tenant, "+15554443301")
    await capture(client, tenant, "+15554443302")
    revoked = await client.delete(f"/v1/consent/{consent_id}", headers=tenant.headers)
    assert revoked.status_code == 200, revoked.text

    response = await client.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)
    assert response.status_code == 200, response.text
    packet = response.json()
    assert packet["manifest"]["format"] == PACKET_FORMAT
    assert packet["manifest"]["contact_number"] == "+15554443301"
    assert packet["manifest"]["sender"]["phone_number"] == tenant.number.number
    assert [e["event"]["type"] for e in packet["events"]] == ["opt_in", "opt_out"]
    # Leaves 0 and 2: the other contact's capture is leaf 1, and appears only as hashes.
    assert [e["leaf_index"] for e in packet["events"]] == [0, 2]
    assert packet["tree_size"] == 3
    assert "+15554443302" not in response.text
    assert packet["record"]["opted_in"] is False

    checks = verify_packet(packet, await log_key(client))
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    assert "pinned" in checks[1].detail

    unpinned = verify_packet(packet)
    assert all(c.ok for c in unpinned)
    assert "NOT PINNED" in unpinned[1].detail


async def test_one_changed_byte_of_evidence_fails_its_inclusion_check(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await capture(client, tenant, "+15554443303")
    packet = (await client.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)).json()
    packet["events"][0]["event"]["evidence"]["ip_address"] = "203.0.113.43"
    failed = [c for c in verify_packet(packet, await log_key(client)) if not c.ok]
    assert [c.name.split(" (")[0] for c in failed] == ["event 1"]
    assert "differs from what the log recorded" in failed[0].detail


async def test_another_organizations_record_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    consent_id = await capture(client, tenant, "+15554443304")
    theirs = await client.get(f"/v1/consent/{consent_id}/proof", headers=other_tenant.headers)
    unknown = await client.get(
        "/v1/consent/0190a1b2-c3d4-7e5f-a7b8-c9d0e1f2a3b6/proof", headers=other_tenant.headers
    )
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == "NOT_FOUND"
    assert theirs.json()["error"]["message"] == unknown.json()["error"]["message"]


async def test_each_organization_has_its_own_log(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await capture(client, tenant, "+15554443305")
    await capture(client, tenant, "+15554443306")
    await capture(client, other_tenant, "+15554443305")
    mine = (await client.get("/v1/proof/checkpoint", headers=tenant.headers)).json()
    theirs = (await client.get("/v1/proof/checkpoint", headers=other_tenant.headers)).json()
    assert (mine["tree_size"], theirs["tree_size"]) == (2, 1)
    assert parse_checkpoint(mine["checkpoint"]).origin.endswith(str(tenant.org_id))


async def test_checkpoint_is_a_signed_note_and_is_reused_until_the_log_grows(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    empty = (await client.get("/v1/proof/checkpoint", headers=tenant.headers)).json()
    assert empty["tree_size"] == 0
    await capture(client, tenant, "+15554443307")
    first = await client.get("/v1/proof/checkpoint?format=text", headers=tenant.headers)
    assert first.headers["content-type"].startswith("text/plain")
    note = first.text
    key = await log_key(client)
    body = verify_note(note, key)
    lines = body.splitlines()
    assert lines[1] == "1" and len(base64.b64decode(lines[2])) == 32
    assert "\n\n\u2014 agentmessage-consent " in note
    again = await client.get("/v1/proof/checkpoint?format=text", headers=tenant.headers)
    assert again.text == note
    bad = await client.get("/v1/proof/checkpoint?format=xml", headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_consistency_proofs_between_any_two_sizes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    roots = {}
    for n in range(1, 8):
        await capture(client, tenant, f"+155544433{10 + n}")
        roots[n] = (await client.get("/v1/proof/checkpoint", headers=tenant.headers)).json()
    for first in range(1, 8):
        for second in range(first, 8):
            response = await client.get(
                f"/v1/proof/consistency?first={first}&second={second}", headers=tenant.headers
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["first_root"] == roots[first]["root_hash"]
            assert body["second_root"] == roots[second]["root_hash"]
            proof = [base64.b64decode(h) for h in body["proof"]]
            assert consistent(
                first,
                second,
                base64.b64decode(body["first_root"]),
                base64.b64decode(body["second_root"]),
                proof,
            )
    too_far = await client.get("/v1/proof/consistency?first=1&second=99", headers=tenant.headers)
    assert too_far.status_code == 422
    assert too_far.json()["error"]["details"] == {"second": "must be at most the log's size (7)"}
    backwards = await client.get("/v1/proof/consistency?first=5&second=2", headers=tenant.headers)
    assert backwards.status_code == 422 and "first" in backwards.json()["error"]["details"]


async def test_saved_checkpoint_is_proven_by_a_packet_with_since(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await capture(client, tenant, "+15554443320")
    saved = (await client.get("/v1/proof/checkpoint?format=text", headers=tenant.headers)).text
    for n in range(5):
        await capture(client, tenant, f"+155544433{30 + n}")
    key = await log_key(client)
    plain = (await client.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)).json()
    (check,) = [c for c in verify_packet(plain, key, saved) if c.name.startswith("consistency")]
    assert not check.ok and "?since=1" in check.detail
    packet = (
        await client.get(f"/v1/consent/{consent_id}/proof?since=1", headers=tenant.headers)
    ).json()
    checks = verify_packet(packet, key, saved)
    assert all(c.ok for c in checks), [c.line() for c in checks]
    too_new = await client.get(f"/v1/consent/{consent_id}/proof?since=50", headers=tenant.headers)
    assert too_new.status_code == 422


async def test_certificate_says_verified_and_shows_the_timeline(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    consent_id = await capture(client, tenant, "+15554443340")
    response = await client.get(
        f"/v1/consent/{consent_id}/proof?format=html", headers=tenant.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Verified: all" in page and "+15554443340" in page and "203.0.113.42" in page


async def test_proof_needs_the_read_scope_and_keys_need_no_auth(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert (await client.get("/v1/proof/checkpoint")).status_code == 401
    keys = await client.get("/.well-known/agentmessage/log-keys")
    assert keys.status_code == 200
    (key,) = keys.json()["keys"]
    assert key["algorithm"] == "Ed25519" and key["current"] is True
    assert parse_vkey(key["vkey"]).key_id == key["key_id"]


@pytest.mark.parametrize("table", ["log_leaves", "log_checkpoints"])
async def test_database_refuses_to_change_the_log(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession, table: str
) -> None:
    await capture(client, tenant, "+15554443350")
    await client.get("/v1/proof/checkpoint", headers=tenant.headers)
    for statement in (f"UPDATE {table} SET org_id = org_id", f"DELETE FROM {table}"):
        with pytest.raises((IntegrityError, DBAPIError)) as refused:
            async with session.begin_nested():
                await session.execute(text(statement))
        assert "append-only" in str(refused.value)
