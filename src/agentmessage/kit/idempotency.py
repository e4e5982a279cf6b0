"""Idempotency-Key: a POST endpoint opts in with the ``Idempotent`` dependency.

A retry with the same key and body replays the stored status and body without
running the endpoint again. The lifecycle of a key, per organization and route:

1. The dependency claims the key in a short transaction of its own, committed
   before the endpoint starts, so a concurrent retry sees the claim (409).
2. ``TransactionalRoute`` stores the response on the claim in the request's own
   transaction, so the effects and the answer to replay commit together.
3. A client error is stored in a short transaction after the rollback; a 5xx or
   an unexpected error releases the claim, so a retry runs again.

An in-progress claim carries a lease (``locked_until``). If its process dies the
lease runs out and a retry takes the claim over. ``locked_until`` only ever grows
for a key, so it also fences: a request whose claim was taken over can no longer
complete, store or release it (its work rolls back; the new holder's stands).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio
import orjson
from fastapi import Depends, Header, Request
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.db.engine import Database
from agentmessage.db.models import IdempotencyKey
from agentmessage.db.upsert import insert_or_ignore
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import IdempotencyInProgress, IdempotencyKeyReused

HEADER = "Idempotency-Key"
MAX_KEY_BYTES = 255
RETENTION = timedelta(hours=24)
# Far longer than any request may run: a live request must not lose its claim.
LEASE = timedelta(minutes=5)
PURGE_BATCH = 100
# Claim attempts when a row vanishes or another taker wins between our reads.
_ATTEMPTS = 3

RETRY_SOON = {"Retry-After": "1"}

IN_PROGRESS = "in_progress"
DONE = "done"


class IdempotentReplay(Exception):
    """Raised instead of running the endpoint: answer with the stored response."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def is_replayable(status: int) -> bool:
    """Whether a response is the request's final answer, stored and replayed.

    Not a 5xx (a retry may succeed), nor a 409 or 429: in this API those say
    "try again later" (IDEMPOTENCY_IN_PROGRESS, RATE_LIMITED), and replaying them
    for 24 hours would make the retry they ask for pointless.
    """
    return status < 500 and status not in (409, 429)


def request_fingerprint(method: str, route: str, body: bytes) -> str:
    """SHA-256 of what makes two requests "the same": method, route and body.

    A JSON body is compared by meaning (key order and whitespace do not matter);
    anything else by its bytes.
    """
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256(f"{method} {route}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def key_digest(key: str) -> str:
    # Starlette decodes header bytes as latin-1, so this gives the key's bytes back.
    return hashlib.sha256(key.encode("latin-1")).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """This request's hold on a key. ``locked_until`` is the fencing token."""

    org_id: uuid.UUID
    endpoint: str
    key_hash: str
    locked_until: datetime

    def _owned(self) -> Any:
        return (
            (IdempotencyKey.org_id == self.org_id)
            & (IdempotencyKey.endpoint == self.endpoint)
            & (IdempotencyKey.key_hash == self.key_hash)
            & (IdempotencyKey.state == IN_PROGRESS)
            & (IdempotencyKey.locked_until == self.locked_until)
        )

    async def complete(self, session: AsyncSession, status: int, body: bytes) -> None:
        """Store the response in the caller's transaction (the request's own).

        Raises IdempotencyInProgress if the claim was taken over meanwhile (this
        request outlived its lease): the caller must roll its work back.
        """
        result: Any = await session.execute(
            update(IdempotencyKey)
            .where(self._owned())
            .values(state=DONE, response_status=status, response_body=body)
        )
        if result.rowcount != 1:
            raise IdempotencyInProgress(headers=RETRY_SOON)

    async def store(self, database: Database, status: int, body: bytes) -> None:
        """Store a response in a short transaction of its own (after a rollback)."""
        with anyio.CancelScope(shield=True):
            async with database.session(writes=True) as session:
                await session.execute(
                    update(IdempotencyKey)
                    .where(self._owned())
                    .values(state=DONE, response_status=status, response_body=body)
                )
                await session.commit()

    async def release(self, database: Database) -> None:
        """Give the key up, so that a retry runs again. Safe if already lost."""
        # Shielded: a cancelled request (client gone) must still let go; if even
        # this fails, the lease runs out and a retry takes the claim over.
        with anyio.CancelScope(shield=True):
            async with database.session(writes=True) as session:
                await session.execute(delete(IdempotencyKey).where(self._owned()))
                await session.commit()


async def claim_key(
    database: Database, *, org_id: uuid.UUID, endpoint: str, key: str, fingerprint: str
) -> IdempotencyClaim:
    """Claim ``key`` for one run of ``endpoint``, committed before returning.

    Raises IdempotentReplay (done before, same body), IdempotencyKeyReused
    (different body) or IdempotencyInProgress (another request holds it).
    """
    key_hash = key_digest(key)
    for _ in range(_ATTEMPTS):
        now = utcnow()
        claim = IdempotencyClaim(org_id, endpoint, key_hash, now + LEASE)
        fresh = {
            "request_hash": fingerprint,
            "state": IN_PROGRESS,
            "response_status": None,
            "response_body": None,
            "created_at": now,
            "locked_until": claim.locked_until,
            "expires_at": now + RETENTION,
        }
        async with database.session(writes=True) as session:
            await _purge_expired(session, org_id, now)
            inserted = await session.execute(
                insert_or_ignore(session, IdempotencyKey)
                .values(org_id=org_id, endpoint=endpoint, key_hash=key_hash, **fresh)
                .returning(IdempotencyKey.key_hash)
            )
            if inserted.first() is not None:
                await session.commit()
                return claim
            row = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.org_id == org_id,
                    IdempotencyKey.endpoint == endpoint,
                    IdempotencyKey.key_hash == key_hash,
                )
            )
            if row is None:  # released between our insert and our read
                continue
            expired = row.expires_at <= now
            if not expired and row.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    details={HEADER: "was already used with a different request body"}
                )
            abandoned = row.state == IN_PROGRESS and row.locked_until <= now
            if expired or abandoned:
                # Conditional on what we read: of several takers, exactly one wins.
                taken: Any = await session.execute(
                    update(IdempotencyKey)
                    .where(
                        IdempotencyKey.org_id == org_id,
                        IdempotencyKey.endpoint == endpoint,
                        IdempotencyKey.key_hash == key_hash,
                        IdempotencyKey.state == row.state,
                        IdempotencyKey.locked_until == row.locked_until,
                    )
                    .values(**fresh)
                )
                if taken.rowcount == 1:
                    await session.commit()
                    return claim
                continue
            if row.state == IN_PROGRESS:
                raise IdempotencyInProgress(headers=RETRY_SOON)
            assert row.response_status is not None and row.response_body is not None
            raise IdempotentReplay(row.response_status, row.response_body)
    raise IdempotencyInProgress(headers=RETRY_SOON)


async def _purge_expired(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> None:
    """Delete a bounded batch of the organization's expired keys.

    SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): concurrent claims
    never wait on, nor deadlock over, rows another one is deleting.
    """
    expired = (
        select(IdempotencyKey.endpoint, IdempotencyKey.key_hash)
        .where(IdempotencyKey.org_id == org_id, IdempotencyKey.expires_at <= now)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.org_id == org_id,
            tuple_(IdempotencyKey.endpoint, IdempotencyKey.key_hash).in_(expired),
        )
    )


def claim_of(request: Request) -> IdempotencyClaim | None:
    """The claim this request holds, if it sent a key and won it."""
    claim: IdempotencyClaim | None = getattr(request.state, "idempotency_claim", None)
    return claim


async def idempotency_claim(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            min_length=1,
            max_length=MAX_KEY_BYTES,
            description=(
                "Makes the request safe to retry. A retry with the same key and body "
                "within 24 hours replays the first response (with the header "
                "`Idempotent-Replayed: true`) without doing anything again; the same "
                "key with a different body is 422 IDEMPOTENCY_KEY_REUSED, and while "
                "the first request still runs, 409 IDEMPOTENCY_IN_PROGRESS. Server "
                "errors (5xx) are not stored. Scoped to your organization and this "
                "endpoint. 1 to 255 bytes; a UUID works well."
            ),
        ),
    ] = None,
) -> IdempotencyClaim | None:
    """Claims the request's Idempotency-Key, if it sent one.

    Must follow the endpoint's authenticated-caller dependency in the signature:
    the key is scoped to the caller's organization (``request.state.caller``),
    and an unauthenticated or forbidden request must never claim a key.
    """
    if idempotency_key is None:
        return None
    caller = getattr(request.state, "caller", None)
    if caller is None:
        raise RuntimeError("Idempotent must come after the caller dependency")
    route = request.scope["route"].path
    claim = await claim_key(
        request.app.state.database,
        org_id=caller.org_id,
        endpoint=f"{request.method} {route}",
        key=idempotency_key,
        fingerprint=request_fingerprint(request.method, route, await request.body()),
    )
    request.state.idempotency_claim = claim
    return claim


Idempotent = Annotated[IdempotencyClaim | None, Depends(idempotency_claim)]
"""Add to a POST endpoint's signature, after its caller, to honour Idempotency-Key."""
