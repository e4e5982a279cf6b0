"""A route class that owns the request's transaction.

The transaction commits after the endpoint returns and before the response is
sent, so a failed commit can never follow a 2xx. Services only flush.

A request holding an Idempotency-Key claim (``kit/idempotency.py``) stores its
response on the claim in that same transaction; a client error is stored after
the rollback, and anything else releases the claim so that a retry runs again.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.db.engine import Database
from agentmessage.kit.errors import ApiError
from agentmessage.kit.handlers import handle_api_error
from agentmessage.kit.idempotency import claim_of, is_replayable

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
_SNAPSHOT = "__agentmessage_snapshot__"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def one_snapshot(endpoint: Endpoint) -> Endpoint:
    """Mark a read endpoint whose statements must all see one snapshot (a page and
    its exact total). Put it under the ``@router.get`` decorator."""
    setattr(endpoint, _SNAPSHOT, True)
    return endpoint


class TransactionalRoute(APIRoute):
    # GET and HEAD get a read session; a route class that writes on GET says so.
    always_writes = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        writes = self.always_writes or bool((self.methods or set()) - _READ_ONLY)
        snapshot = getattr(self.endpoint, _SNAPSHOT, False)

        def open_session(database: Database) -> AsyncSession:
            if writes:
                return database.session(writes=True)
            if snapshot:
                return database.snapshot_session()
            # A read runs its statements without BEGIN and ROLLBACK on PostgreSQL.
            return database.statement_session()

        async def run_in_transaction(request: Request) -> Response:
            async with open_session(request.app.state.database) as session:
                request.state.session = session
                try:
                    response = await handler(request)
                    claim = claim_of(request)
                    if claim is not None and is_replayable(response.status_code):
                        # In the endpoint's transaction: its effects and the
                        # answer to replay commit together or not at all.
                        await claim.complete(session, response.status_code, bytes(response.body))
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
                return response

        async def route_handler(request: Request) -> Response:
            database = request.app.state.database
            try:
                response = await run_in_transaction(request)
            except BaseException as exc:
                claim = claim_of(request)
                if claim is None:
                    raise
                if isinstance(exc, ApiError) and is_replayable(exc.status):
                    # Rendered here so that the stored body is exactly the one
                    # the client gets, request_id included.
                    response = await handle_api_error(request, exc)
                    await claim.store(database, response.status_code, bytes(response.body))
                    return response
                await claim.release(database)
                raise
            claim = claim_of(request)
            if claim is not None and not is_replayable(response.status_code):
                await claim.release(database)
            return response

        return route_handler


class WritingRoute(TransactionalRoute):
    """For GET endpoints that may write (signing a checkpoint on demand): their
    session takes SQLite's write lock up front, as a POST's does. A read
    transaction that later writes fails at once on SQLite if another writer
    committed in between."""

    always_writes = True


async def get_session(request: Request) -> AsyncSession:
    """The request's session (opened by ``TransactionalRoute``).

    ``async`` although it awaits nothing: FastAPI runs a plain ``def``
    dependency in a worker thread, a thread hop on every request.
    """
    session: AsyncSession = request.state.session
    return session
