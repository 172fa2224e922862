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

from service.api import health, items, recommend, sessions
from service.api.limits import BodyDeadlineMiddleware, BodyLimitMiddleware
from service.api.openapi import install_openapi
from service.api.recommend import RecommendFastPath
from service.core.serving import RecommendService
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
    async with open_resources(settings, app.state.metrics) as resources:
        app.state.resources = resources
        logger.info("serving bundle %s", resources.bundle.bundle_id)
        try:
            yield
        finally:
            app.state.resources = None


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
    register_error_handlers(app)
    for module in (recommend, sessions, items, health):
        app.include_router(module.router)
    app.include_router(recommend.alias_router)
    default_limit = Settings.model_fields["max_body_bytes"].default

    def body_limit() -> int:
        current: Settings | None = app.state.settings
        return current.max_body_bytes if current else default_limit

    def serving() -> RecommendService | None:
        resources: Resources | None = app.state.resources
        return resources.serving if resources else None

    def catalogue_sample() -> tuple[str, list[str]]:
        resources: Resources | None = app.state.resources
        if resources is None:
            return "", []
        return resources.bundle.bundle_id, resources.bundle.catalogue.external_of[1:4]

    install_openapi(app, lambda: app.state.settings or Settings(), catalogue_sample)
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # outermost (added last): answers POST /v1/recommend before the framework's own middleware stack
    app.add_middleware(RecommendFastPath, serving=serving, metrics=app.state.metrics, body_limit=body_limit)
    default_timeout = Settings.model_fields["body_timeout_s"].default

    def body_timeout() -> float:
        current: Settings | None = app.state.settings
        return current.body_timeout_s if current else default_timeout

    app.add_middleware(BodyDeadlineMiddleware, timeout_s=body_timeout)  # outermost: every route's body reads
    return app


app = create_app()
