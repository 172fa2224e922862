import orjson
from fastapi import APIRouter, Response

from service.api.deps import ServingDep
from service.api.protocol import RecommendRequest, RecommendResponse

router = APIRouter(prefix="/v1", tags=["recommend"])


@router.post("/recommend", response_model=RecommendResponse)
async def recommend(req: RecommendRequest, serving: ServingDep) -> Response:
    """Top-k items for a history (inline, or a session's), optionally with LLM explanations."""
    # Serialised once here: returning a model would make FastAPI dump it, validate it again against
    # response_model and encode it (measured: a third of the route's CPU). The schema stays documented.
    return Response(orjson.dumps(await serving.recommend(req)), media_type="application/json")
