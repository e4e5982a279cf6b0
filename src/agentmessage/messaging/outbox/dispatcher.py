"""The outbox dispatcher: sends queued messages through the provider.

One pass (``run_once``) is three kinds of short transaction, never one long one:

1. claim: due ``queued`` messages become ``sending`` with an attempt row each,
   committed at once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   dispatchers, in ``serve`` processes or ``agentmessage worker``, claim
   disjoint messages and never send one twice); a message to a contact who
   opted out of its sender number since it was queued is failed right there
   (``contact_opted_out``), unless it is the opt-out confirmation itself;
2. the provider call, outside any transaction;
3. the outcomes of the batch, in one transaction: ``sent``/``delivered``; a
   transient error re-queued with exponential backoff; a permanent one, or the
   last attempt, ``failed`` with the provider's error code.

A message whose dispatcher died mid-attempt stays ``sending`` until its lease
runs out and is then failed as ``outcome_unknown``: the provider may have taken
it, and sending again could deliver it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from agentmessage.db.engine import Database
from agentmessage.kit.clock import utcnow
from agentmessage.kit.phone import masked
from agentmessage.messaging.providers import (
    OutboundSms,
    ProviderError,
    SendReceipt,
    SmsProvider,
    provider_for,
)
from agentmessage.messaging.repository import ClaimedMessage, OutboxRepository
from agentmessage.messaging.service import OPT_OUT_CONFIRMATION
from agentmessage.settings import Settings

log = logging.getLogger(__name__)

# Far longer than a provider call may take (its timeout is at most 120 s).
LEASE: Final = timedelta(minutes=5)
MAX_BACKOFF: Final = timedelta(hours=1)


@dataclass(slots=True)
class PassReport:
    """What one pass did, by outcome."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0
    abandoned: int = 0
    skipped_late: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.failed + self.refused + self.skipped_late


class Dispatcher:
    def __init__(
        self,
        database: Database,
        provider: SmsProvider,
        *,
        batch_size: int = 20,
        max_attempts: int = 5,
        retry_base: timedelta = timedelta(seconds=5),
        poll_interval: float = 1.0,
    ) -> None:
        self.database = database
        self.provider = provider
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, database: Database, settings: Settings, provider: SmsProvider | None = None
    ) -> Dispatcher:
        return cls(
            database,
            provider or provider_for(settings),
            batch_size=settings.dispatcher_batch_size,
            max_attempts=settings.dispatcher_max_attempts,
            retry_base=timedelta(seconds=settings.dispatcher_retry_base_seconds),
            poll_interval=settings.dispatcher_poll_seconds,
        )

    async def run_once(self) -> PassReport:
        """Claim one batch of due messages, send them, record how each went."""
        report = PassReport()
        now = utcnow()
        async with self.database.session(writes=True) as session:
            outbox = OutboxRepository(session)
            report.abandoned = await outbox.close_abandoned(now)
            claimed = await outbox.claim_due(now, self.batch_size, now + LEASE, self.provider.name)
            refused = await outbox.opted_out(
                [m for m in claimed if m.purpose != OPT_OUT_CONFIRMATION]
            )
            late = {m.id for m in claimed if m.send_by is not None and now > m.send_by}
            for message in claimed:
                if message.id in late and message.id not in refused:
                    # Past its deadline: not sent late, ever.
                    await outbox.finish(
                        message,
                        now,
                        status="skipped_late",
                        outcome="skipped_late",
                        error_code="skipped_late",
                    )
                    log.info("message %s skipped: past its send-by time", message.id)
                if message.id in refused:
                    await outbox.finish(
                        message,
                        now,
                        status="failed",
                        outcome="refused",
                        error_code="contact_opted_out",
                    )
                    log.info(
                        "message %s refused: %s opted out", message.id, masked(message.to_number)
                    )
            await session.commit()
        report.refused = len(refused)
        report.skipped_late = len(late - refused)
        sending = [m for m in claimed if m.id not in refused and m.id not in late]
        answers = await asyncio.gather(
            *(self._send(message) for message in sending), return_exceptions=True
        )
        async with self.database.session(writes=True) as session:
            outbox = OutboxRepository(session)
            now = utcnow()
            for message, answer in zip(sending, answers, strict=True):
                outcome = await self._record(outbox, message, answer, now)
                if outcome is not None:
                    setattr(report, outcome, getattr(report, outcome) + 1)
            await session.commit()
        return report

    async def drain(self, max_passes: int = 1000) -> PassReport:
        """Passes until nothing due is left (for tests and ``worker --once``)."""
        total = PassReport()
        for _ in range(max_passes):
            report = await self.run_once()
            for name in ("sent", "retried", "failed", "refused", "abandoned", "skipped_late"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            if report.claimed == 0:
                break
        return total

    async def _send(self, message: ClaimedMessage) -> SendReceipt | ProviderError:
        try:
            return await self.provider.send(
                OutboundSms(message.from_number, message.to_number, message.body)
            )
        except ProviderError as error:
            return error

    async def _record(
        self,
        outbox: OutboxRepository,
        message: ClaimedMessage,
        answer: SendReceipt | BaseException,
        now: datetime,
    ) -> str | None:
        """Write how the attempt went; the report's name for it."""
        if isinstance(answer, SendReceipt):
            await outbox.finish(
                message,
                now,
                status=answer.status,
                outcome="sent",
                provider_message_id=answer.provider_message_id,
            )
            return "sent"
        if not isinstance(answer, ProviderError):
            # Not the provider's answer but a fault here (a bug): whether the
            # provider took the message is unknown, so the claim is left to run
            # out and the message is closed as outcome_unknown.
            log.error("dispatcher could not send message %s: %s", message.id, type(answer).__name__)
            return None
        retry = answer.retryable and message.attempt < self.max_attempts
        await outbox.finish(
            message,
            now,
            status="queued" if retry else "failed",
            outcome="retry" if retry else "failed",
            error_code=answer.code,
            error_message=answer.message,
            next_attempt_at=now + self._backoff(message.attempt) if retry else None,
        )
        log.warning(
            "message %s attempt %d to %s: provider error %s%s",
            message.id,
            message.attempt,
            masked(message.to_number),
            answer.code,
            ", will retry" if retry else "",
        )
        return "retried" if retry else "failed"

    def _backoff(self, attempt: int) -> timedelta:
        backoff: timedelta = self.retry_base * 2 ** (attempt - 1)
        return min(backoff, MAX_BACKOFF)

    # The loop, for `serve` (inline) and `agentmessage worker`.

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (after a commit)."""
        self._wake.set()

    async def run(self) -> None:
        """Pass after pass until ``stop``; a failing pass is logged and retried."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                report = await self.run_once()
            except Exception as exc:
                # The type only: database errors carry SQL and contacts' numbers.
                log.error("dispatcher pass failed: %s", type(exc).__name__)
                report = PassReport()
            if report.claimed == self.batch_size:
                continue  # more may be due right away
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._woken_or_stopped()

    async def _woken_or_stopped(self) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()

    def start(self) -> None:
        """Run the loop as a task of the running event loop."""
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="agentmessage-dispatcher")

    def request_stop(self) -> None:
        """Ask the loop to end after the pass under way (a signal handler may call it)."""
        self._stop.set()

    async def stop(self) -> None:
        """Finish the pass under way, stop the loop, close the provider."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.provider.aclose()
