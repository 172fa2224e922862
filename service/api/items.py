from typing import Annotated

from fastapi import APIRouter, Path, Query

from service.api.deps import ServingDep
from service.api.protocol import ITEM_ID_HELP, ITEM_ID_PATTERN, ItemOut, ItemSearchResponse, errors

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.get("", response_model=ItemSearchResponse, responses=errors(422, 503))
async def search_items(
    serving: ServingDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="part of a title, any case")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemSearchResponse:
    return ItemSearchResponse(query=q, items=serving.search_items(q, limit))


@router.get("/{item_id}", response_model=ItemOut, responses=errors(404, 422, 503))
async def get_item(
    item_id: Annotated[str, Path(pattern=ITEM_ID_PATTERN, description=ITEM_ID_HELP)], serving: ServingDep
) -> ItemOut:
    return serving.item(item_id)
