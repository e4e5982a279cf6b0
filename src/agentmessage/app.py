"""Builds the FastAPI application: routers, middleware, error handlers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentmessage import __version__
from agentmessage.compliance.endpoints import router as compliance_router
from agentmessage.consent.endpoints import router as consent_router
from agentmessage.db.engine import Database, create_engine
from agentmessage.deactivations.endpoints import router as deactivations_router
from agentmessage.decisions.endpoints import router as decisions_router
from agentmessage.decisions.fast import FastCheck
from agentmessage.health import router as health_router
from agentmessage.hosted.endpoints import router as hosted_router
from agentmessage.hosted.pages import router as hosted_pages_router
from agentmessage.kit.handlers import install_error_handlers
from agentmessage.kit.middleware import BodyLimitMiddleware, RequestContextMiddleware
from agentmessage.kit.openapi import FastAPIForClients
from agentmessage.kit.ratelimit import DatabaseStore, RateLimiter, RedisStore
from agentmessage.messaging.endpoints import router as messaging_router
from agentmessage.messaging.outbox.dispatcher import Dispatcher
from agentmessage.messaging.review_endpoints import router as reviews_router
from agentmessage.messaging.webhooks import router as twilio_webhooks_router
from agentmessage.proof.endpoints import router as proof_router
from agentmessage.proof.keys import load_or_create
from agentmessage.proof.service import Checkpointer, origin_prefix
from agentmessage.revocations.endpoints import router as revocations_router
from agentmessage.settings import Settings

MIB = 1024 * 1024

DESCRIPTION = """
The system of record for SMS consent: capture consent with evidence, honour
opt-outs at once, and prove later how and when each consent was given or revoked.

Authenticate with your API key as a bearer token: `Authorization: Bearer am_live_...`.
Every request is scoped to the organization that owns the key. Errors share one
envelope: `{"success": false, "error": {"code", "message", "request_id", "details"?}}`.
"""


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    database = database or Database(
        create_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    )

    # Shared by every process serving this database (or Redis): the allowance
    # holds across all of them.
    rate_limiter = RateLimiter(
        RedisStore(settings.redis_url) if settings.redis_url else DatabaseStore(database)
    )
    # Sends the outbox. Runs in this process unless AGENTMESSAGE_DISPATCHER=off
    # (then `agentmessage worker` does); tests drive it with run_once().
    dispatcher = Dispatcher.from_settings(database, settings)
    # Signs checkpoints of the proof log; generated into the data dir when absent.
    signer = load_or_create(settings.resolved_signing_key_file)
    checkpointer = Checkpointer(
        database,
        signer,
        origin_prefix(settings.public_base_url),
        settings.checkpoint_interval_seconds,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything loaded at start-up lives as long as the process: move it out
        # of the collector's sight, so full collections stay short (measured by
        # bench/bulk.py: 60-100 ms pauses become 3-11 ms).
        gc.collect()
        gc.freeze()
        if settings.dispatcher == "inline":
            dispatcher.start()
            checkpointer.start()
        yield
        await checkpointer.stop()
        await dispatcher.stop()
        await rate_limiter.close()
        await database.dispose()

    app = FastAPIForClients(
        title="AgentMessage Consent",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Starlette's trailing-slash redirect built Location from the Host header
        # (an open redirect); a path with a stray slash is a plain 404 instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.rate_limiter = rate_limiter
    app.state.dispatcher = dispatcher
    app.state.signer = signer
    app.state.checkpointer = checkpointer
    app.include_router(health_router)
    app.include_router(hosted_router)
    app.include_router(messaging_router)
    # Before the consent router: /v1/consent/check and /decisions/... are not ids.
    app.include_router(decisions_router)
    app.include_router(reviews_router)
    app.include_router(revocations_router)
    app.include_router(compliance_router)
    app.include_router(consent_router)
    app.include_router(deactivations_router)
    app.include_router(proof_router)
    app.include_router(hosted_pages_router)
    app.include_router(twilio_webhooks_router)
    install_error_handlers(app)
    if settings.fast_check and database.engine.dialect.name == "postgresql":
        # Innermost: behind the request id, the access log and the body limit.
        app.add_middleware(FastCheck, database=database, rate_limiter=rate_limiter)
    # Added last = outermost: the request id exists before anything else runs.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=1 * MIB,
        limits={"/v1/consent/bulk": 8 * MIB, "/v1/deactivations": 2 * MIB},
    )
    app.add_middleware(RequestContextMiddleware)
    return app
