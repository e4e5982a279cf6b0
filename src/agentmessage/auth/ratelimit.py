"""The organization's per-minute allowance, charged per request.

Every authenticated request costs 1 (``require`` charges it); an endpoint whose
cost depends on its body (bulk) opts out with ``require(scope, charge=False)``
and calls ``charge`` itself with the cost. The decision goes on
``request.state.rate_limit``; ``RequestContextMiddleware`` turns it into the
``RateLimit-*`` headers of whatever response follows, success or error.
"""

from __future__ import annotations

from fastapi import Request

from agentmessage.auth.service import Caller
from agentmessage.kit.errors import RateLimited, ValidationFailed
from agentmessage.kit.ratelimit import RateLimitDecision, RateLimiter
from agentmessage.orgs.plans import PLANS


def allowance(caller: Caller) -> int:
    """Units per minute: the organization's own setting, else its plan's default."""
    if caller.rate_limit_per_minute is not None:
        return caller.rate_limit_per_minute
    return PLANS[caller.plan].default_rate_limit_per_minute


async def charge(
    request: Request,
    caller: Caller,
    *,
    cost: int = 1,
    field: str = "body",
    unit: str | None = None,
) -> RateLimitDecision:
    """Spend ``cost`` of the organization's allowance for this minute.

    Raises ValidationFailed (``details[field]`` names the largest cost that can
    pass) when ``cost`` exceeds the whole allowance, and RateLimited (429, with
    Retry-After) when it does not fit what is left; a refusal spends nothing.
    Call it before the request's session runs any statement (on SQLite that
    session may hold the write lock the charge needs).
    """
    limiter: RateLimiter = request.app.state.rate_limiter
    limit = allowance(caller)
    decision = await limiter.hit(caller.org_id, cost=cost, limit=limit)
    request.state.rate_limit = decision
    if decision.allowed:
        request.state.rate_limit_charged = True
        return decision
    if cost > limit:
        raise ValidationFailed(
            details={
                field: f"at most {limit} {unit or field} per call: the organization's "
                f"allowance is {limit} per minute; split the batch"
            }
        )
    raise RateLimited(retry_after=decision.reset)


async def charge_once(request: Request, caller: Caller) -> None:
    """The default charge of 1, made at most once per request."""
    if not getattr(request.state, "rate_limit_charged", False):
        await charge(request, caller)


async def show_allowance(request: Request, caller: Caller) -> RateLimitDecision:
    """Where the organization stands, for the headers, spending nothing."""
    limiter: RateLimiter = request.app.state.rate_limiter
    decision = await limiter.peek(caller.org_id, limit=allowance(caller))
    request.state.rate_limit = decision
    return decision
