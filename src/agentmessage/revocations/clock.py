"""The FCC's revocation clock: honored within 10 US business days of receipt."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Final

import holidays

BUSINESS_DAYS: Final = 10
CONFIRMATION_WINDOW: Final = timedelta(minutes=5)


@cache
def _federal_holidays(year: int) -> holidays.HolidayBase:
    # Federal holidays, with their observed days (July 4th on a Saturday: the Friday).
    return holidays.country_holidays("US", years=[year, year + 1])


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _federal_holidays(day.year)


def honor_by(received_at: datetime) -> date:
    """The 10th US business day after the day of receipt (in UTC), federal
    holidays excluded: the last day the revocation may be honored."""
    day = received_at.astimezone(UTC).date()
    counted = 0
    while counted < BUSINESS_DAYS:
        day += timedelta(days=1)
        if is_business_day(day):
            counted += 1
    return day
