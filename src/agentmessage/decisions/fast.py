"""``POST /v1/consent/check`` on PostgreSQL in two statements, beside the framework.

An agent asks before every message it sends, so the single-contact check is the
hottest call we serve. Through the route it costs seven statements (key, rate
limit, number, records, challenges, decision, COMMIT), each through SQLAlchemy's
async layer, after FastAPI's dependency solving: about 4 ms of CPU against
0.2 ms for ``/healthz``. Here it is two statements on the driver's connection:

1. one read: the key's caller, whether the number is the caller's, the records
   (with their deactivation flag) and the open challenges of the contacts;
2. one write: the rate-limit spend and the decision's row together (the
   decision is stored only if the spend fits, and both commit as one statement;
   the minute's first spend also clears the organization's old windows, as the
   rate limiter's own spend does).

It answers only the ordinary case, and with the same code as the route: the
body is validated by the route's model, the selects' criteria and the answers
are ``decisions.service``'s, the caller is ``auth.service``'s. Anything else
(no or unknown key, a missing scope, another organization's number, a body the
model refuses, a body not sent as ``application/json``, ``at``, a spent
allowance) falls through to the route, which
answers it, errors included, exactly as before. Nothing is written before the
fall-through, so nothing is charged or stored twice.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from pydantic import ValidationError
from sqlalchemy import DateTime, String, Table, Uuid, bindparam, exists, func, insert, select
from sqlalchemy import tuple_ as row_of
from sqlalchemy.sql.elements import ClauseElement
from starlette.types import ASGIApp, Receive, Scope, Send

from agentmessage.auth.keys import hash_key, looks_like_key
from agentmessage.auth.ratelimit import allowance
from agentmessage.auth.service import caller_of, key_caller
from agentmessage.db.bulk import one_of_parameter
from agentmessage.db.compiled import Compiled
from agentmessage.db.engine import Database
from agentmessage.db.models import Challenge, ConsentDecision, ConsentRecord, PhoneNumber
from agentmessage.decisions import service
from agentmessage.decisions.schemas import CheckRequest
from agentmessage.kit.clock import utcnow
from agentmessage.kit.middleware import replaying
from agentmessage.kit.ratelimit import (
    RETAIN,
    DatabaseStore,
    RateLimiter,
    decision_of,
    window_start,
)
from agentmessage.kit.responses import FastJSONResponse

PATH = "/v1/consent/check"
SCOPE = "consent:read"


def _read_statement() -> ClauseElement:
    caller, org = key_caller()
    phone = bindparam("phone_number_id", type_=Uuid())
    now = bindparam("now", type_=DateTime(timezone=True))
    contact = one_of_parameter(ConsentRecord.contact_number, "contacts", String())
    records = select(func.array_agg(row_of(*service.record_columns()))).where(
        *service.record_criteria(org, phone, contact)
    )
    challenge = one_of_parameter(Challenge.contact_number, "contacts", String())
    pending = select(func.array_agg(Challenge.contact_number)).where(
        *service.pending_criteria(org, phone, challenge, now)
    )
    number = exists().where(PhoneNumber.org_id == caller.c.org_id, PhoneNumber.id == phone)
    return select(
        caller,
        number.label("number_found"),
        records.scalar_subquery().label("records"),
        pending.scalar_subquery().label("pending"),
    )


_DECISIONS = cast(Table, ConsentDecision.__table__)


def _spend_and_store(store: DatabaseStore) -> ClauseElement:
    """The rate-limit spend, and the decision's row only if the spend was made:
    ``spent`` back, or no row when the allowance is spent (nothing written). A
    spend that opens the minute's window also deletes the organization's windows
    from before ``stale_before`` (``DatabaseStore.stale``)."""
    spent = store.spend_statement.cte("spend")
    names = [column.name for column in _DECISIONS.c]
    values = select(*[bindparam(name, type_=_DECISIONS.c[name].type) for name in names])
    stored = insert(_DECISIONS).from_select(names, values.select_from(spent)).cte("decision")
    opened = exists().where(spent.c.spent == bindparam("spent"))
    stale = (
        DatabaseStore.stale(bindparam("org_id"), bindparam("stale_before"))
        .where(opened)
        .cte("stale")
    )
    return select(spent.c.spent).add_cte(stored, stale)


class FastCheck:
    """Pure ASGI middleware in front of the route (inside the request id and body
    limit middleware, whose work it keeps)."""

    def __init__(self, app: ASGIApp, *, database: Database, rate_limiter: RateLimiter) -> None:
        self.app = app
        self.database = database
        self.limiter = rate_limiter
        dialect = database.engine.dialect
        self._read = Compiled(_read_statement(), dialect)
        store = rate_limiter.store
        # With the database's windows the spend joins the decision's statement;
        # with Redis it is Redis's own round trip, then the decision's INSERT.
        self._spends_here = isinstance(store, DatabaseStore)
        write = (
            _spend_and_store(store) if isinstance(store, DatabaseStore) else service.INSERT_DECISION
        )
        self._write = Compiled(write, dialect)
        self._route: Any = _UNSET

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope) != PATH:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away
            return
        answer = await self._answer(scope, body)
        if answer is None:
            await self.app(scope, replaying(body, receive), send)
            return
        scope["route"] = self._route_of(scope)  # for the access log
        await FastJSONResponse(answer)(scope, receive, send)

    async def _answer(self, scope: Scope, raw: bytes) -> dict[str, Any] | None:
        """The decision, stored; None to let the route answer."""
        digest = _digest(scope)
        if digest is None or not _sent_as_json(scope):
            return None
        try:
            body = CheckRequest.model_validate_json(raw)
        except ValidationError:
            return None
        if body.at is not None:
            return None
        valid = service.valid_contacts(body.contact_numbers)
        async with self.database.driver_connection() as connection:
            # Once the connection is ours: a request that waited for one is
            # answered, and charged, as of the moment it is served.
            now = utcnow()
            row = await connection.fetchrow(
                self._read.sql,
                *self._read.args(
                    {
                        "digest": digest,
                        "phone_number_id": body.phone_number_id,
                        "contacts": valid,
                        "now": now,
                    }
                ),
            )
            if row is None:
                return None
            caller = caller_of(row, digest)
            if caller is None or SCOPE not in caller.scopes or not row["number_found"]:
                return None
            limit = allowance(caller)
            if limit < 1:  # nothing fits (the route says why)
                return None
            states = {record[1]: service.state_of(record) for record in row["records"] or ()}
            decision = service.decide(caller, body, valid, states, set(row["pending"] or ()), now)
            values = {
                **decision,
                "results": orjson.dumps(decision["results"]).decode(),
                "actor": orjson.dumps(decision["actor"]).decode(),
                "window_start": window_start(now),
                "stale_before": window_start(now) - RETAIN,
                "spent": 1,
                "at_most": limit,
            }
            if self._spends_here:
                total = await connection.fetchval(self._write.sql, *self._write.args(values))
                if total is None:  # the allowance is spent: the route answers 429
                    return None
                rate = decision_of(True, limit, total, now)
            else:
                rate = await self.limiter.hit(caller.org_id, cost=1, limit=limit)
                if not rate.allowed:
                    return None
                await connection.execute(self._write.sql, *self._write.args(values))
        scope["state"]["rate_limit"] = rate
        return service.decision_json(decision)

    def _route_of(self, scope: Scope) -> Any:
        if self._route is _UNSET:
            routes = getattr(scope.get("app"), "routes", ())
            self._route = next((r for r in routes if getattr(r, "path", None) == PATH), None)
        return self._route


_UNSET: Any = object()


def _route_path(scope: Scope) -> str:
    """The path as the router matches it: without the ``root_path`` a proxy
    mounts the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _digest(scope: Scope) -> str | None:
    """The presented key's digest, for a well-formed ``Authorization: Bearer`` only."""
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"authorization"]
    if len(found) != 1:
        return None
    scheme, _, key = found[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not looks_like_key(key):
        return None
    return hash_key(key)


def _sent_as_json(scope: Scope) -> bool:
    """``Content-Type: application/json`` (parameters aside), once. The route
    reads the same bodies as JSON; it refuses one without a content type, and
    decides for itself about the other JSON types (``+json``)."""
    found: list[bytes] = [value for name, value in scope["headers"] if name == b"content-type"]
    return len(found) == 1 and found[0].split(b";", 1)[0].strip().lower() == b"application/json"


async def _body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
