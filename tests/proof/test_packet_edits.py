"""A business holding its own packet edits it: drops a revocation, drops an event
from the middle, or changes a field. Each edit fails the verifier, run alone with
only the packet and the pinned log key, on a line naming the broken check.

The story the README walks a newcomer through: capture, revoke, capture again,
revoke again, download the packet, verify it with the pinned key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fixtures.builders import Tenant, capture_body
from tests.fixtures.verifier import failed_checks, run_alone

from agentmessage.kit.clock import clock

START = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
CONTACT = "+15554446001"

Packet = dict[str, Any]


async def whole_story(client: httpx.AsyncClient, tenant: Tenant) -> tuple[Packet, str]:
    """Opt-in, opt-out, opt-in, opt-out through the API; the packet and the log key."""
    with clock.frozen(START):
        for hour in (0, 2):
            clock.advance(timedelta(hours=1))
            captured_at = (START + timedelta(hours=hour, minutes=30)).isoformat()
            captured = await client.post(
                "/v1/consent",
                json=capture_body(tenant, CONTACT, captured_at=captured_at),
                headers=tenant.headers,
            )
            assert captured.status_code in (200, 201), captured.text
            clock.advance(timedelta(hours=1))
            consent_id = captured.json()["id"]
            revoked = await client.delete(f"/v1/consent/{consent_id}", headers=tenant.headers)
            assert revoked.status_code == 200, revoked.text
        packet = await client.get(f"/v1/consent/{consent_id}/proof", headers=tenant.headers)
    keys = (await client.get("/.well-known/agentmessage/log-keys")).json()["keys"]
    (current,) = [k["vkey"] for k in keys if k["current"]]
    return packet.json(), current


def drop_the_last_revocation(packet: Packet) -> None:
    packet["events"].pop()
    packet["record"]["opted_in"] = True
    packet["record"]["opted_out_at"] = None


def drop_a_middle_event(packet: Packet) -> None:
    del packet["events"][1]


def set_in(*path: str, value: Any) -> Callable[[Packet], None]:
    def edit(packet: Packet) -> None:
        target = packet
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value

    return edit


EDITS: dict[str, tuple[Callable[[Packet], None], str]] = {
    # The cases, each with the check that must name it.
    "last revocation dropped": (drop_the_last_revocation, "record head"),
    "middle event dropped": (drop_a_middle_event, "record head"),
    "tree_size": (lambda p: p.update(tree_size=p["tree_size"] + 1), "checkpoint fields"),
    "root_hash": (set_in("root_hash", value="A" * 43 + "="), "checkpoint fields"),
    "organization name": (set_in("manifest", "organization", "name", value="Other"), "record head"),
    "sender number": (
        set_in("manifest", "sender", "phone_number", value="+15550109999"),
        "record head",
    ),
    "consent_method": (set_in("record", "consent_method", value="written"), "record state"),
    "opted_in_at": (set_in("record", "opted_in_at", value="2030-01-01T00:00:00Z"), "record state"),
    # And what a cut packet might try next.
    "record head removed": (lambda p: p.pop("record_head"), "record head"),
    "a field added": (set_in("note", value="verified by counsel"), "format"),
    "downgraded to format 1": (
        set_in("manifest", "format", value="agentmessage.proof/1"),
        "format",
    ),
    "leaf_hash": (lambda p: p["events"][0].update(leaf_hash="A" * 43 + "="), "event 1"),
    "key name": (set_in("public_key", "name", value="someone-else"), "public key fields"),
    "generated_at": (
        set_in("manifest", "generated_at", value="2030-01-01T00:00:00Z"),
        "record head",
    ),
    # A number RFC 8785 cannot write: a failed check, never a traceback.
    "unsafe integer": (set_in("manifest", "organization", "name", value=2**70), "record head"),
}


async def test_the_whole_story_verifies_and_signs_its_sender(client, tenant, tmp_path: Path):
    packet, vkey = await whole_story(client, tenant)
    done = run_alone(tmp_path, packet, vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("VERIFIED")
    events = [entry["event"] for entry in packet["events"]]
    assert [e["type"] for e in events] == ["opt_in", "opt_out", "opt_in", "opt_out"]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4]
    assert {e["format"] for e in events} == {"agentmessage.event/2"}
    assert {e["sender_number"] for e in events} == {tenant.number.number}
    assert events[0]["previous"] is None
    assert [e["previous"] for e in events[1:]] == [x["leaf_hash"] for x in packet["events"][:-1]]


@pytest.mark.parametrize("edit", list(EDITS))
async def test_an_edited_packet_fails_naming_its_check(client, tenant, tmp_path: Path, edit):
    packet, vkey = await whole_story(client, tenant)
    change, check = EDITS[edit]
    edited = copy.deepcopy(packet)
    change(edited)
    done = run_alone(tmp_path, edited, vkey)
    assert done.returncode == 1, done.stdout
    assert done.stdout.splitlines()[-1].startswith("NOT VERIFIED")
    assert any(name.startswith(check) for name in failed_checks(done)), done.stdout


async def test_a_dropped_middle_event_is_named_by_the_event_after_it(client, tenant, tmp_path):
    packet, vkey = await whole_story(client, tenant)
    drop_a_middle_event(packet)
    done = run_alone(tmp_path, packet, vkey)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert any(
        line.startswith("FAIL  event 2 (opt_in")
        and "it is event 3 of its record, but number 2 here" in line
        for line in lines
    ), done.stdout
    assert any("the record had 4 events at tree size" in line for line in lines), done.stdout
