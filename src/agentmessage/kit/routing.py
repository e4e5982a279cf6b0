"""A route class that owns the request's transaction.

The transaction commits after the endpoint returns and before the response is
sent, so a failed commit can never follow a 2xx. Services only flush.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        writes = bool((self.methods or set()) - _READ_ONLY)

        async def route_handler(request: Request) -> Response:
            async with request.app.state.database.session(writes=writes) as session:
                request.state.session = session
                try:
                    response = await handler(request)
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
                return response

        return route_handler


def get_session(request: Request) -> AsyncSession:
    """The request's session (opened by ``TransactionalRoute``)."""
    session: AsyncSession = request.state.session
    return session
