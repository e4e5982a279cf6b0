"""The default provider: no network. Every message is delivered at once, so a
person can play both sides with ``POST /v1/sandbox/inbound``."""

from __future__ import annotations

from agentmessage.kit.ids import new_id
from agentmessage.messaging.providers.base import OutboundSms, SendReceipt


class SandboxProvider:
    name = "sandbox"

    async def send(self, sms: OutboundSms) -> SendReceipt:
        return SendReceipt(provider_message_id=f"SB{new_id().hex}", status="delivered")

    async def aclose(self) -> None:
        pass
