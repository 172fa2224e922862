"""Request and response schemas of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
SESSION_ID_HELP = "1-128 characters from A-Z a-z 0-9 _ . : -"


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int = Field(description="dense item id, 1..n_items (see GET /v1/items?q=)")
    timestamp: float | datetime | None = Field(
        None, description="epoch seconds or ISO-8601; orders the events"
    )


HistoryInput = list[int | HistoryEvent]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"history": [12, 50, 7], "k": 5, "explain": True}]},
    )
    history: HistoryInput = Field(
        default_factory=list,
        description="events, oldest first (or ordered by timestamp); item ids or objects",
    )
    session_id: SessionId | None = Field(
        None, description=f"{SESSION_ID_HELP}; the events are appended to it and its stored history is used"
    )
    k: int = Field(10, ge=1, le=100, description="how many items to return")
    explain: bool = Field(False, description="generate a short explanation per item (LLM)")
    exclude_seen: bool = Field(True, description="never return items already in the history")
    rerank: bool | None = Field(
        None,
        description="reorder the retrieved candidates with the bundle's LLM ranker (DELRec). null: the "
        "service default (on when the bundle has a rerank spec). The LLM ranks the top N retrieved items "
        "(N = the bundle's n_candidates, 20 by default); with k > N the items after them keep the retrieval "
        "order. See rerank_status in the response",
    )


class RecommendedItem(BaseModel):
    item_id: int
    title: str
    score: float = Field(
        description="retrieval score (inner product); for reranked items (rerank_status ok) the retrieval "
        "score + lambda * the LLM's log-probability of the item, the order the LLM stage gave"
    )
    rank: int = Field(description="1-based position in this answer")
    retrieval_rank: int = Field(
        description="1-based position among the retrieved candidates, before the rerank stage; equals rank "
        "when the list was not reranked"
    )
    explanation: str | None = None


class Timings(BaseModel):
    encode: float
    search: float
    rerank: float
    explain: float
    total: float


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    session_id: str | None
    bundle_id: str
    timings_ms: Timings
    explanation_status: Literal["ok", "timeout", "disabled", "unavailable", "shed"] = Field(
        description="disabled: not requested or llm_backend=none; unavailable: the LLM failed; "
        "timeout: the deadline passed (ranking returned without the missing explanations); shed: the LLM was "
        "already generating for explain_max_pending requests (ranking returned without explanations). Only the "
        "first explain_max_items items are explained"
    )
    rerank_status: Literal["ok", "timeout", "error", "unavailable", "disabled"] = Field(
        description="ok: reranked by the LLM; disabled: not requested, llm_backend=none, or the bundle has no "
        "ranker; timeout / error / unavailable (the LLM failed to start or the bundle's ranker does not fit "
        "it): the retrieval order was served"
    )
    degraded: bool = Field(
        False, description="the session store was unreachable; the inline history was used"
    )


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"events": [3, 9]}]})
    events: HistoryInput = Field(min_length=1)


class SessionResponse(BaseModel):
    session_id: str
    history: list[int]
    length: int


class ItemOut(BaseModel):
    item_id: int
    raw_id: str | int | None = None
    title: str
    description: str | None = None
    categories: list[str] = Field(default_factory=list)
    brand: str | None = None


class ItemSearchResponse(BaseModel):
    query: str
    items: list[ItemOut]


class ComponentState(BaseModel):
    status: Literal["ok", "failing", "disabled"]
    detail: str | None = None


class ReadyResponse(BaseModel):
    ready: bool  # the ranking path (bundle + index) can answer; false only then
    bundle_id: str | None
    components: dict[str, ComponentState]
    degraded: list[str] = []  # failing components the ranking path does without (answers say what is missing)
    draining: bool = False  # shutting down (SIGTERM): not ready while the requests in flight finish
