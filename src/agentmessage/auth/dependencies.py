"""FastAPI dependencies: the authenticated caller, and one alias per scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentmessage.auth import ratelimit
from agentmessage.auth.service import Caller, authenticate
from agentmessage.kit.errors import Forbidden, Unauthorized

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="Send your API key as a bearer token: `Authorization: Bearer am_live_...`.",
)


async def authenticated_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The key's caller. 401 for a missing, malformed, unknown or revoked key.

    The lookup is one statement of its own, not part of the request's
    transaction: on SQLite a write request's transaction holds the write lock
    from its first statement, and the work that must commit on its own before
    the endpoint runs (rate-limit charges, Idempotency-Key claims) would
    otherwise wait on it.
    """
    if credentials is None:
        raise Unauthorized()
    async with request.app.state.database.statement(writes=False) as connection:
        caller = await authenticate(connection, credentials.credentials)
    if caller is None:
        raise Unauthorized()
    request.state.caller = caller
    return caller


def require(scope: str, *, charge: bool = True) -> Callable[..., Awaitable[Caller]]:
    """The caller, if its key has ``scope``; 403 otherwise.

    Charges the request's cost of 1 against the organization's rate limit (429
    when spent, the 403 included). With ``charge=False`` the endpoint charges
    its own cost (``ratelimit.charge``, bulk: one per record); until it does,
    the response shows the allowance without spending any of it.
    """

    async def dependency(
        request: Request, caller: Annotated[Caller, Depends(authenticated_caller)]
    ) -> Caller:
        if charge:
            await ratelimit.charge_once(request, caller)
        else:
            await ratelimit.show_allowance(request, caller)
        if scope not in caller.scopes:
            raise Forbidden(details={"scope": f"this key needs the {scope} scope"})
        return caller

    return dependency


ConsentRead = Annotated[Caller, Depends(require("consent:read"))]
ConsentWrite = Annotated[Caller, Depends(require("consent:write"))]
MessagesRead = Annotated[Caller, Depends(require("messages:read"))]
MessagesWrite = Annotated[Caller, Depends(require("messages:write"))]
