"""The Twilio provider: the real Messages API through the ``twilio`` package's
asyncio HTTP client (aiohttp), so sending blocks no thread."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, Final

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from agentmessage.messaging.providers.base import OutboundSms, ProviderError, SendReceipt

# Twilio's client logs every request at INFO; its failures reach us as exceptions.
_http_log = logging.getLogger("agentmessage.messaging.twilio_http")
_http_log.setLevel(logging.WARNING)

# Statuses Twilio may answer a create with; all mean "taken, delivery to follow".
_TAKEN: Final = frozenset({"accepted", "scheduled", "queued", "sending", "sent"})


class _HeaderAuthHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's aiohttp client, sending basic auth as a header: the client builds an
    ``aiohttp.BasicAuth``, deprecated (and gone in aiohttp 4)."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the overridden signature)
        allow_redirects: bool = False,
    ) -> Any:
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        return await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )


class TwilioProvider:
    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base_url: str,
        status_callback_url: str | None,
        timeout_seconds: float,
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.api_base_url = api_base_url
        self.status_callback_url = status_callback_url
        self.timeout_seconds = timeout_seconds
        self._client: Client | None = None
        self._http: _HeaderAuthHttpClient | None = None

    def _twilio(self) -> Client:
        # Made on first use, inside the running event loop its aiohttp session needs.
        if self._client is None:
            self._http = _HeaderAuthHttpClient(logger=_http_log)
            self._client = Client(
                username=self.account_sid,
                password=self._auth_token,
                http_client=self._http,
                # The client reads TWILIO_EDGE/TWILIO_REGION from os.environ unless
                # handed a mapping: settings.py is the only reader of the environment.
                environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
            )
            self._client.api.base_url = self.api_base_url
        return self._client

    async def send(self, sms: OutboundSms) -> SendReceipt:
        extra: dict[str, Any] = {}
        if self.status_callback_url:
            extra["status_callback"] = self.status_callback_url
        try:
            async with asyncio.timeout(self.timeout_seconds):
                created = (
                    await self._twilio()
                    .api.v2010.accounts(self.account_sid)
                    .messages.create_async(
                        to=sms.to_number, from_=sms.from_number, body=sms.body, **extra
                    )
                )
        except TwilioRestException as exc:
            # 5xx and 429 may pass later; any other 4xx (21211 invalid 'To', 21610
            # unsubscribed recipient...) will not.
            retryable = exc.status >= 500 or exc.status == 429
            code = str(exc.code) if exc.code is not None else f"http_{exc.status}"
            raise ProviderError(code, _short(exc.msg), retryable=retryable) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderError(
                "provider_unreachable", type(exc).__name__, retryable=True
            ) from None
        if created.status in ("failed", "undelivered"):
            code = str(created.error_code) if created.error_code else "provider_failed"
            raise ProviderError(code, _short(created.error_message or ""), retryable=False)
        if not created.sid or created.status not in _TAKEN:
            raise ProviderError(
                "provider_unexpected", f"unexpected status {created.status!r}", retryable=True
            )
        return SendReceipt(provider_message_id=created.sid, status="sent")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._client = self._http = None


def _short(text: str) -> str:
    return text[:500]
