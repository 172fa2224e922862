"""Dependencies as Annotated aliases; tests swap them with `app.dependency_overrides`.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
per dependency per request (measured: ~30 % of the recommend route's CPU under load went to that pool).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.api.hold import GENERATION
from service.api.protocol import SESSION_ID_HELP
from service.core.lifecycle import Generation
from service.core.serving import RecommendService
from service.errors import NotReady
from service.metrics.registry import Metrics
from service.resources import Resources


async def get_resources_or_none(request: Request) -> Resources | None:
    return getattr(request.app.state, "resources", None)


async def get_resources(request: Request) -> Resources:
    res = await get_resources_or_none(request)
    if res is None:
        raise NotReady("the service is starting or stopping: retry shortly")
    return res


async def get_serving(request: Request) -> RecommendService:
    """The RecommendService of the bundle generation this request holds (api/hold.py), so that a swap
    while it runs cannot change its bundle."""
    gen: Generation | None = request.scope.get(GENERATION)
    if gen is None:
        raise NotReady("the service is starting or stopping: retry shortly")
    return gen.serving


async def get_draining(request: Request) -> bool:
    """True once the server got SIGTERM (python -m service): /readyz answers 503 while requests finish."""
    return bool(getattr(request.app.state, "draining", False))


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


ResourcesDep = Annotated[Resources, Depends(get_resources)]
MaybeResourcesDep = Annotated[Resources | None, Depends(get_resources_or_none)]
ServingDep = Annotated[RecommendService, Depends(get_serving)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
DrainingDep = Annotated[bool, Depends(get_draining)]
SessionIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description=SESSION_ID_HELP)]
