"""The app factory. Run with either

    uvicorn --factory service.main:create_app      # settings from SEQREC_* at startup
    uvicorn service.main:app                       # the same, through a module-level app
    python -m service                              # uvicorn with SEQREC_HOST / SEQREC_PORT

Settings are built on startup (in the lifespan) unless passed in, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import admin, health, items, recommend, sessions
from service.api.hold import HoldGeneration
from service.api.limits import BodyDeadlineMiddleware, BodyLimitMiddleware
from service.api.openapi import install_openapi
from service.api.recommend import RecommendFastPath
from service.auth.guard import Guard, open_guard
from service.auth.middleware import AuthMiddleware
from service.auth.openapi import document_security
from service.core.lifecycle import Generation
from service.errors import register_error_handlers
from service.metrics.middleware import MetricsMiddleware
from service.metrics.registry import Metrics
from service.resources import Resources, open_resources
from service.settings import Settings

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings or Settings()
    app.state.settings = settings
    logging.getLogger("service").setLevel(settings.log_level.upper())
    # the keys first: bad key configuration stops the start before the bundle is loaded
    async with (
        open_guard(settings, app.state.metrics) as guard,
        open_resources(settings, app.state.metrics) as resources,
    ):
        app.state.resources, app.state.guard = resources, guard
        logger.info("serving bundle %s from %s", resources.bundle.bundle_id, resources.generation.path)
        try:
            yield
        finally:
            app.state.resources = app.state.guard = None


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="llm-seqrec",
        summary="Sequential recommendation with LLM explanations, served from a training bundle",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.resources = None
    app.state.draining = False  # set on SIGTERM by python -m service (__main__.py): /readyz turns 503
    app.state.guard = None
    register_error_handlers(app)
    for module in (recommend, sessions, items, health, admin):
        app.include_router(module.router)
    app.include_router(recommend.alias_router)
    default_limit = Settings.model_fields["max_body_bytes"].default

    def body_limit() -> int:
        current: Settings | None = app.state.settings
        return current.max_body_bytes if current else default_limit

    def acquire() -> Generation | None:
        resources: Resources | None = app.state.resources
        return resources.lifecycle.acquire() if resources else None

    def catalogue_sample() -> tuple[str, list[str]]:
        resources: Resources | None = app.state.resources
        if resources is None:
            return "", []
        return resources.bundle.bundle_id, resources.bundle.catalogue.external_of[1:4]

    install_openapi(app, lambda: app.state.settings or Settings(), catalogue_sample)
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(HoldGeneration, acquire=acquire)
    # answers POST /v1/recommend before the framework's own middleware stack (only auth and the body deadline run
    # before it)
    app.add_middleware(RecommendFastPath, acquire=acquire, metrics=app.state.metrics, body_limit=body_limit)

    def guard() -> Guard | None:
        current: Guard | None = app.state.guard
        return current

    # added after the fast path, so it runs before it: API keys, scopes and rate limits for every route
    app.add_middleware(AuthMiddleware, guard=guard)
    document_security(app, lambda: (current := guard()) is not None and current.enabled)
    default_timeout = Settings.model_fields["body_timeout_s"].default

    def body_timeout() -> float:
        current: Settings | None = app.state.settings
        return current.body_timeout_s if current else default_timeout

    # outermost (added last): a deadline on every route's body reads, the fast path's and auth's included
    app.add_middleware(BodyDeadlineMiddleware, timeout_s=body_timeout)
    return app


app = create_app()
