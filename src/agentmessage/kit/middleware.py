"""Pure ASGI middleware: request ids, body limits, the last-resort 500, access log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentmessage.kit.ids import new_request_id
from agentmessage.kit.ratelimit import RateLimitDecision
from agentmessage.kit.responses import error_response

access_log = logging.getLogger("agentmessage.access")
error_log = logging.getLogger("agentmessage.errors")


class RequestContextMiddleware:
    """Gives every request a ULID (``X-Request-Id``), and turns an unhandled
    exception into a 500 envelope with that id. Adds the ``RateLimit-*`` headers
    to any response of a request that the rate limiter saw (``state.rate_limit``).

    The log line names the exception type and where it was raised, never its
    message: messages of database errors carry SQL and the contacts' numbers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                rate_limit = scope["state"].get("rate_limit")
                if isinstance(rate_limit, RateLimitDecision):
                    headers.extend(
                        (name.lower().encode(), value.encode())
                        for name, value in rate_limit.headers().items()
                    )
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            frame = _innermost_frame(exc)
            error_log.error(
                "unhandled %s at %s request_id=%s", type(exc).__name__, frame, request_id
            )
            if response_started:
                raise
            response = error_response(500, "INTERNAL", "internal error", request_id)
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "(no route)"
            access_log.info(
                "%s %s %d %.1fms request_id=%s",
                scope["method"],
                path,
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


def _innermost_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"


class BodyLimitMiddleware:
    """Refuses a body over its path's limit with 413, reading at most the limit.

    The body is buffered here (bounded) and replayed to the app, so an endpoint
    never sees more than its limit and nothing unbounded is held in memory.
    """

    def __init__(
        self, app: ASGIApp, *, default_limit: int, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default_limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _NUL_ESCAPE.search(body) or (b"%00" in body and _is_form(scope)):
            # PostgreSQL text cannot hold U+0000: refused here, for every
            # endpoint, as bad input (SQLite would have stored it).
            await self._has_nul(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    async def _has_nul(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(scope.get("state", {}).get("request_id", ""))
        response = error_response(
            422,
            "VALIDATION_FAILED",
            "validation failed",
            request_id,
            details={"body": "must not contain the NUL character (U+0000)"},
        )
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        request_id = str(scope.get("state", {}).get("request_id", ""))
        response = error_response(
            413,
            "PAYLOAD_TOO_LARGE",
            f"request body is larger than {_human(limit)}",
            request_id,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (read already) as the whole request,
    then whatever ``receive`` gives (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# A JSON \u0000 escape: the backslash before "u0000" not itself escaped (an even
# number of backslashes before it, none included).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _is_form(scope: Scope) -> bool:
    headers: Any = scope.get("headers", [])
    return any(
        name == b"content-type" and value.startswith(b"application/x-www-form-urlencoded")
        for name, value in headers
    )


def _content_length(scope: Scope) -> int | None:
    headers: Any = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _human(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
