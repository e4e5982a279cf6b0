"""What the dispatcher needs from an SMS provider. A provider never touches the
database: it sends one message and says how that went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class OutboundSms:
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The provider took the message."""

    provider_message_id: str
    # "sent": handed over, delivery reported later (status callbacks);
    # "delivered": the provider knows it arrived (the sandbox).
    status: Literal["sent", "delivered"]


class ProviderError(Exception):
    """The provider did not take the message.

    ``code`` is the provider's own error code when it gave one (Twilio's ``21211``),
    else ours (``provider_unreachable``). ``retryable``: a later attempt may work
    (network trouble, 5xx, 429); otherwise the message fails at once.
    """

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class SmsProvider(Protocol):
    name: str

    async def send(self, sms: OutboundSms) -> SendReceipt:
        """Send one SMS; raises ProviderError when it was not taken."""
        ...

    async def aclose(self) -> None:
        """Release connections (the provider may be used again afterwards)."""
        ...
