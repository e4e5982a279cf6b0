"""An organization's own opt-out confirmation: checked when set, then the one SMS
its contacts get after opting out."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.kit.errors import ValidationFailed
from agentmessage.orgs import confirmation
from agentmessage.orgs.service import create_organization, set_opt_out_confirmation
from tests.fixtures.builders import Tenant
from tests.messaging.helpers import reply

GOOD = "Sunrise Dental: you are unsubscribed. No more messages from us. Reply START to rejoin."


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (GOOD, None),
        ("Baja confirmada: ya no recibirá mensajes. Responda START para volver.", None),
        ("Sunrise: dado de baja. Responda START para volver.", None),
        ("You are unsubscribed. See our sale at https://example.com", "link"),
        ("You are unsubscribed. Visit sunrise.com for more", "link"),
        ("You are unsubscribed. 20% off if you come back!", "market"),
        ("You are unsubscribed, here is a coupon: SAVE10", "market"),
        ("Thanks for your message!", "must tell"),
        ("You are unsubscribed. " + "x" * 150, "characters"),
        ("   ", "characters"),
    ],
)
def test_the_text_is_checked(text: str, why: str | None) -> None:
    problem = confirmation.problem(text)
    if why is None:
        assert problem is None
    else:
        assert problem is not None and why in problem


def test_the_default_passes_its_own_check() -> None:
    assert confirmation.problem(confirmation.default("Sunrise Dental")) is None


async def test_a_bad_text_is_refused_and_changes_nothing(session: AsyncSession) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await create_organization(
            session, name="Promo Co", opt_out_confirmation="Unsubscribed! 50% off next time"
        )
    assert "opt_out_confirmation" in (refused.value.details or {})
    org = await create_organization(session, name="Promo Co")
    with pytest.raises(ValidationFailed):
        await set_opt_out_confirmation(session, org.id, "Bye! Shop our deals at www.promo.co")
    assert org.opt_out_confirmation is None


async def test_stop_gets_the_organizations_own_text(
    client: httpx.AsyncClient, tenant: Tenant, session: AsyncSession
) -> None:
    await set_opt_out_confirmation(session, tenant.org_id, GOOD)
    await session.commit()
    answer = await reply(client, tenant, "STOP", "+15554443399")
    (sent,) = answer["replies"]
    assert sent["body"] == GOOD
    await set_opt_out_confirmation(session, tenant.org_id, None)
    await session.commit()
    again = await reply(client, tenant, "STOP", "+15554443398")
    assert "you are unsubscribed and will get no more messages" in again["replies"][0]["body"]
