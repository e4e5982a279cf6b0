"""After an opt-out by SMS: one confirmation, within 5 minutes of the opt-out or
never (skipped_late), with a clock the test controls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agentmessage.kit.clock import clock
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from tests.fixtures.builders import Tenant
from tests.messaging.helpers import message, reply

STOPPED_AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delay", "status", "sent"),
    [
        (timedelta(minutes=4, seconds=59), "delivered", 1),
        (timedelta(minutes=5, seconds=1), "skipped_late", 0),
    ],
)
async def test_the_confirmation_goes_within_5_minutes_or_never(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dispatcher: Dispatcher,
    delay: timedelta,
    status: str,
    sent: int,
) -> None:
    with clock.frozen(STOPPED_AT):
        answer = await reply(client, tenant, "Stop texting me please")
    (confirmation,) = answer["replies"]
    with clock.frozen(STOPPED_AT + delay):
        report = await dispatcher.run_once()
    assert (report.sent, report.skipped_late) == (sent, 1 - sent)
    stored = await message(client, tenant, confirmation["id"])
    assert stored["status"] == status
    with clock.frozen(STOPPED_AT + delay + timedelta(hours=1)):
        assert (await dispatcher.run_once()).claimed == 0  # and never again


async def test_an_opt_in_confirmation_has_no_deadline(
    client: httpx.AsyncClient, tenant: Tenant, dispatcher: Dispatcher
) -> None:
    with clock.frozen(STOPPED_AT):
        answer = await reply(client, tenant, "START")
    with clock.frozen(STOPPED_AT + timedelta(hours=2)):
        report = await dispatcher.run_once()
    assert report.sent == 1
    assert (await message(client, tenant, answer["replies"][0]["id"]))["status"] == "delivered"
