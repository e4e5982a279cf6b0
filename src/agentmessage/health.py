"""Liveness and readiness."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from agentmessage.kit.errors import ServiceUnavailable
from agentmessage.kit.openapi import ErrorEnvelope

router = APIRouter(tags=["Health"])
log = logging.getLogger(__name__)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: the database answers",
    responses={503: {"model": ErrorEnvelope, "description": "Database unreachable"}},
)
async def readyz(request: Request) -> Health:
    try:
        async with request.app.state.database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise ServiceUnavailable("database unreachable") from None
    return Health()
