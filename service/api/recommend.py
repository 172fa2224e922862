from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.deps import ServingDep
from service.api.protocol import RecommendRequest, RecommendResponse

router = APIRouter(prefix="/v1", tags=["recommend"])


def _request_body_doc() -> dict[str, Any]:
    """The OpenAPI request body of RecommendRequest, declared by hand because the route parses the body
    itself (nested models resolve to components that other routes already register)."""
    schema = RecommendRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/recommend", response_model=RecommendResponse, openapi_extra=_request_body_doc())
async def recommend(request: Request, serving: ServingDep) -> Response:
    """Top-k items for a history (inline, or a session's), optionally with LLM explanations."""
    # The hottest route parses and validates its body in one pydantic-core call and serialises its answer
    # once: FastAPI's generic path (json.loads + validate, then dump + re-validate against response_model
    # + encode) cost about a third of the route's event-loop time. Same schemas, same 422 messages.
    try:
        req = RecommendRequest.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    return Response(orjson.dumps(await serving.recommend(req)), media_type="application/json")
