from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import ServingDep
from service.api.protocol import ItemOut, ItemSearchResponse

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.get("", response_model=ItemSearchResponse)
async def search_items(
    serving: ServingDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="part of a title, any case")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemSearchResponse:
    return ItemSearchResponse(query=q, items=serving.search_items(q, limit))


@router.get("/{item_id}", response_model=ItemOut)
async def get_item(item_id: int, serving: ServingDep) -> ItemOut:
    return serving.item(item_id)
