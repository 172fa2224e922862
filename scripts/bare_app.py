"""A bare FastAPI endpoint, the reference point of the service benchmark: same framework, same request
schema parsing, same server settings, no recommendation work.

    uvicorn --app-dir scripts bare_app:app --port 8001
"""

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI()


class Body(BaseModel):
    history: list[str] = Field(default_factory=list)  # catalogue ids, as the service takes them
    k: int = 10
    explain: bool = False
    exclude_seen: bool = True


class Item(BaseModel):
    item_id: str
    score: float
    rank: int


@app.post("/v1/recommend")
async def recommend(body: Body) -> dict[str, list[Item]]:
    return {"items": [Item(item_id=i, score=0.0, rank=r) for r, i in enumerate(body.history[: body.k], 1)]}
