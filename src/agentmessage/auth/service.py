"""Creating, revoking and checking API keys."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NewType, cast

from sqlalchemy import CTE, ScalarSelect, Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agentmessage.auth.keys import KEY_PREFIX, SCOPES, generate_key, hash_key, looks_like_key
from agentmessage.db.models import ApiKey, Organization
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.orgs.service import get_organization

OrgScope = NewType("OrgScope", uuid.UUID)
"""An organization id that authentication vouched for. Only this module makes one,
and every repository read takes one, so a query cannot forget its tenant."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    org_id: OrgScope
    org_name: str
    plan: str
    rate_limit_per_minute: int | None
    key_id: uuid.UUID
    scopes: frozenset[str]

    @property
    def actor(self) -> dict[str, str]:
        """Who did it, as recorded in history events."""
        return {"type": "api_key", "id": str(self.key_id)}


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    plain: str


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = [s.strip() for s in scopes if s.strip()]
    unknown = sorted(set(chosen) - set(SCOPES))
    if not chosen or unknown:
        raise ValidationFailed(
            details={"scopes": f"must be a non-empty subset of {', '.join(SCOPES)}"}
        )
    return [s for s in SCOPES if s in chosen]


async def create_key(
    session: AsyncSession, *, org_id: uuid.UUID, scopes: Iterable[str], name: str | None = None
) -> CreatedKey:
    """A new key; the plain text is returned here and never again."""
    await get_organization(session, org_id)
    chosen = parse_scopes(scopes)
    if name is not None and len(name) > 200:
        raise ValidationFailed(details={"name": "must be at most 200 characters"})
    plain = generate_key()
    key = ApiKey(
        org_id=org_id,
        name=name,
        key_hash=hash_key(plain),
        key_prefix=plain[len(KEY_PREFIX) : len(KEY_PREFIX) + 8],
        scopes=" ".join(chosen),
        created_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    return CreatedKey(key=key, plain=plain)


async def revoke_key(session: AsyncSession, *, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = await session.get(ApiKey, (org_id, key_id))
    if key is None:
        raise NotFound("key not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


_KEYS = cast(Table, ApiKey.__table__)
_ORGS = cast(Table, Organization.__table__)
# Core, not the ORM: authentication runs on every request, and an ORM session
# (with its BEGIN and ROLLBACK) cost a millisecond of CPU more than this.
CALLER_BY_DIGEST = (
    select(
        _KEYS.c.org_id,
        _KEYS.c.id,
        _KEYS.c.key_hash,
        _KEYS.c.scopes,
        _KEYS.c.revoked_at,
        _ORGS.c.name,
        _ORGS.c.plan,
        _ORGS.c.rate_limit_per_minute,
    )
    .join(_ORGS, _ORGS.c.id == _KEYS.c.org_id)
    .where(_KEYS.c.key_hash == bindparam("digest"))
)


KeyOrg = NewType("KeyOrg", ScalarSelect[Any])
"""The organization of the key a statement looks up itself (``key_caller``), as
a SQL expression: for reads in the same statement as the lookup. Like
``OrgScope``, only this module makes one."""


def key_caller() -> tuple[CTE, KeyOrg]:
    """``CALLER_BY_DIGEST`` as a CTE for a statement that also reads what the
    caller may see, and the caller's organization to scope those reads by.
    Check the row with ``caller_of`` before using anything the statement read."""
    caller = CALLER_BY_DIGEST.limit(1).cte("caller")
    return caller, KeyOrg(select(caller.c.org_id).scalar_subquery())


async def authenticate(connection: AsyncConnection, presented: str) -> Caller | None:
    """The caller behind a bearer key, or None for a malformed, unknown or revoked key."""
    if not looks_like_key(presented):
        return None
    digest = hash_key(presented)
    row = (await connection.execute(CALLER_BY_DIGEST, {"digest": digest})).first()
    return None if row is None else caller_of(row._mapping, digest)


def caller_of(row: Mapping[Any, Any], digest: str) -> Caller | None:
    """The caller of a row of ``CALLER_BY_DIGEST``; None for a revoked key."""
    # The lookup matched on the digest already; comparing again in constant time
    # costs nothing and keeps timing out of the picture whatever the index does.
    if not hmac.compare_digest(row["key_hash"], digest) or row["revoked_at"] is not None:
        return None
    return Caller(
        org_id=OrgScope(row["org_id"]),
        org_name=row["name"],
        plan=row["plan"],
        rate_limit_per_minute=row["rate_limit_per_minute"],
        key_id=row["id"],
        scopes=frozenset(row["scopes"].split()),
    )
