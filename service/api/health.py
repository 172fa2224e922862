from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import DrainingDep, MaybeResourcesDep, MetricsDep
from service.api.protocol import ReadyResponse
from service.core.health import readiness
from service.metrics.registry import CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(res: MaybeResourcesDep, metrics: MetricsDep, draining: DrainingDep) -> JSONResponse:
    """Bundle, index, session store, LLM and rerank stage state; 503 while the ranking path (bundle, index)
    cannot answer, and from SIGTERM on (`draining`). Other failing components are listed in `degraded`."""
    report = await readiness(res, draining)
    metrics.ready.set(1 if report.ready else 0)
    for name, state in report.components.items():
        metrics.component_failing.labels(name).set(1 if state.status == "failing" else 0)
    return JSONResponse(report.model_dump(), status_code=200 if report.ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
