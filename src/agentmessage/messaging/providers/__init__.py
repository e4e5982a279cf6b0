"""SMS providers. ``provider_for`` picks the configured one."""

from __future__ import annotations

from agentmessage.messaging.providers.base import (
    OutboundSms,
    ProviderError,
    SendReceipt,
    SmsProvider,
)
from agentmessage.settings import Settings

__all__ = ["OutboundSms", "ProviderError", "SendReceipt", "SmsProvider", "provider_for"]


def provider_for(settings: Settings) -> SmsProvider:
    """The provider ``AGENTMESSAGE_SMS_PROVIDER`` names."""
    if settings.sms_provider == "twilio":
        from agentmessage.messaging.providers.twilio import TwilioProvider

        assert settings.twilio_account_sid and settings.twilio_auth_token  # settings checked
        return TwilioProvider(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            api_base_url=settings.twilio_api_base_url,
            status_callback_url=settings.twilio_status_callback_url,
            timeout_seconds=settings.twilio_timeout_seconds,
        )
    from agentmessage.messaging.providers.sandbox import SandboxProvider

    return SandboxProvider()
