"""Request and response schemas of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
SESSION_ID_HELP = "1-128 characters from A-Z a-z 0-9 _ . : -"
ITEM_ID_PATTERN = r"^[!-~]{1,64}$"  # printable ASCII, no spaces: MovieLens ids, ASINs, SKUs
MAX_INT_ID = 2**63 - 1  # larger JSON integers are refused (no catalogue numbers its items beyond int64)
ITEM_ID_HELP = (
    "the catalogue's own item id (MovieLens movie id, ASIN, ...), 1-64 printable ASCII characters; a JSON "
    "integer is read as its decimal digits"
)

# The catalogue's id: a string, or a non-negative JSON integer read as its decimal digits (numeric catalogues,
# MovieLens, are naturally sent as numbers); the service turns it into a string (serving.parse_events). A
# plain union tried left to right: a Python validator per item cost ~8x the parse of a 50-item history.
ItemRef = Annotated[
    Annotated[str, StringConstraints(pattern=ITEM_ID_PATTERN)] | Annotated[int, Field(ge=0, le=MAX_INT_ID)],
    Field(union_mode="left_to_right", description=ITEM_ID_HELP),
]


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: ItemRef
    # the datetime part is not strict: FastAPI validates the events route in Python mode, where a strict
    # datetime would refuse the ISO-8601 string JSON carries
    timestamp: float | Annotated[datetime, Strict(False)] | None = Field(
        None, description="epoch seconds or ISO-8601; orders the events"
    )


HistoryInput = list[Annotated[ItemRef | HistoryEvent, Field(union_mode="left_to_right")]]


class RecommendRequest(BaseModel):
    # strict: a JSON 0 is not false and "10" is not 10 (the schema says boolean, integer)
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"history": ["12", "50", "7"], "k": 5, "explain": True}]},
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
    item_id: str = Field(description="the catalogue's own item id")
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
    ignored_items: list[str] = Field(
        default_factory=list,
        description="history items left out of the ranking: in the catalogue but not in the bundle's model "
        "(cold-start rows, when the bundle skips them), or stored in the session under an earlier bundle "
        "that this one does not know",
    )


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"events": ["3", "9"]}]}
    )
    events: HistoryInput = Field(min_length=1)


class SessionResponse(BaseModel):
    session_id: str
    history: list[str] = Field(description="the catalogue's item ids, oldest first")
    length: int


class ItemOut(BaseModel):
    item_id: str = Field(description="the catalogue's own item id")
    in_model: bool = Field(
        description="the bundle's model ranks it; false: a catalogue item the model has no row for "
        "(never recommended)"
    )
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


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable reason, e.g. unknown_items, invalid_request")
    message: str = Field(description="what went wrong and what to change")
    details: Any = Field(None, description="structured context (the offending ids, fields, limits)")


class ErrorResponse(BaseModel):
    """The one shape of every error this API answers, the framework's own (404, 405, bad JSON) included."""

    error: ErrorDetail


_ERROR_MEANING = {
    401: "no API key, or an unknown one",
    403: "the API key lacks the scope this route needs",
    404: "the session, item or route does not exist",
    405: "the route does not take this method (the Allow header lists those it takes)",
    408: "the request body did not arrive within body_timeout_s (the connection is closed)",
    409: "the request conflicts with the service's state",
    413: "the request body is larger than max_body_bytes",
    422: "the request is malformed or names unknown items; details say which field or ids",
    429: "rate limit of this API key reached (Retry-After says when to retry)",
    503: "not ready (starting, stopping) or a backing service it needs (the session store) is down",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {s: {"model": ErrorResponse, "description": _ERROR_MEANING[s]} for s in statuses}
