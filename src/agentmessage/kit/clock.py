"""The one source of "now", so that tests can control time without sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta


class Clock:
    """Timezone-aware UTC time; frozen or shifted only by tests."""

    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        return self._frozen if self._frozen is not None else datetime.now(UTC)

    @contextmanager
    def frozen(self, at: datetime) -> Iterator[None]:
        if at.tzinfo is None:
            raise ValueError("a frozen time must be timezone-aware")
        previous, self._frozen = self._frozen, at.astimezone(UTC)
        try:
            yield
        finally:
            self._frozen = previous

    def advance(self, delta: timedelta) -> None:
        if self._frozen is None:
            raise RuntimeError("only a frozen clock can be advanced")
        self._frozen += delta


clock = Clock()


def utcnow() -> datetime:
    return clock.now()
