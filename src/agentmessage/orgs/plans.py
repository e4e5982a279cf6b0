"""Plans: what each one allows, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    attested_capture: bool
    default_rate_limit_per_minute: int


PLANS: Final[dict[str, Plan]] = {
    plan.name: plan
    for plan in (
        Plan("payg", attested_capture=True, default_rate_limit_per_minute=1200),
        Plan("starter", attested_capture=False, default_rate_limit_per_minute=600),
        Plan("growth", attested_capture=True, default_rate_limit_per_minute=3000),
        Plan("scale", attested_capture=True, default_rate_limit_per_minute=12000),
        Plan("enterprise", attested_capture=True, default_rate_limit_per_minute=60000),
        # Dormant tiers: existing customers only, never sold any more.
        Plan("legacy_basic", attested_capture=False, default_rate_limit_per_minute=600),
        Plan("legacy_pro", attested_capture=False, default_rate_limit_per_minute=1200),
    )
}

PLAN_REQUIRED_MESSAGE: Final = (
    "Tier 3 consent capture requires Growth or higher; use double-opt-in "
    "(POST /v1/consent/double-opt-in) or the hosted form (POST /v1/consent/hosted) on Starter"
)
