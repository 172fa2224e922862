from fastapi import APIRouter

from service.api.deps import ServingDep
from service.api.protocol import RecommendRequest, RecommendResponse

router = APIRouter(prefix="/v1", tags=["recommend"])


@router.post("/recommend", response_model=RecommendResponse)
async def recommend(req: RecommendRequest, serving: ServingDep) -> RecommendResponse:
    """Top-k items for a history (inline, or a session's), optionally with LLM explanations."""
    return await serving.recommend(req)
