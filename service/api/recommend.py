"""POST /v1/recommend: documented and routed by FastAPI, and served on the hot path by `RecommendFastPath`,
an ASGI middleware that answers this one route without the framework's per-request machinery.

Both run the same code (`answer`): same schemas, same error bodies, same metrics. The fast path exists
because, measured at the ASGI level, routing + the dependency solver + the request/response wrappers cost
about as much event-loop time per request as the recommendation itself (docs/service.md).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import MetricsDep, ServingDep
from service.api.disconnect import EventStream, until_disconnected
from service.api.limits import read_body
from service.api.protocol import RecommendRequest, RecommendResponse, errors
from service.core.lifecycle import Generation
from service.core.serving import RecommendService
from service.errors import NotReady, error_headers, error_status_and_body
from service.metrics.registry import Metrics

PATH = "/v1/recommend"
STREAM_PATH = "/v1/recommend/stream"
ALIAS = "/recommend"  # the name clients were first given; the same route
PATHS = frozenset({PATH, ALIAS})
router = APIRouter(prefix="/v1", tags=["recommend"])
alias_router = APIRouter(tags=["recommend"])
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _request_body_doc() -> dict[str, Any]:
    """The OpenAPI request body of RecommendRequest, declared by hand because the route parses the body
    itself (nested models resolve to components that other routes already register)."""
    schema = RecommendRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def answer(serving: RecommendService, body: bytes, receive: Receive, metrics: Metrics) -> bytes:
    """Parse + validate the body in one pydantic-core call, recommend, serialise once with orjson.
    FastAPI's generic path (json.loads + validate, then dump + re-validate against response_model +
    encode) cost about a third of the route's event-loop time.

    An answer that may wait on the LLM (explanations, the rerank stage) is cancelled when its client
    disconnects. A retrieval-only answer takes milliseconds, less than the disconnect watcher's own task
    costs (~10 % of the route's throughput at 32 connections), so it is not watched."""
    req = parse_request(body)
    work = serving.recommend(req)
    if req.explain or serving.reranker.would_run(req.rerank):
        return orjson.dumps(await until_disconnected(work, receive, metrics, PATH))
    return orjson.dumps(await work)


_ERRORS = errors(404, 408, 413, 422, 503)


@router.post(
    "/recommend", response_model=RecommendResponse, openapi_extra=_request_body_doc(), responses=_ERRORS
)
async def recommend(request: Request, serving: ServingDep, metrics: MetricsDep) -> Response:
    """Top-k items for a history (inline, or a session's), optionally with LLM explanations. Item ids are
    the catalogue's own, in the request and in the answer. A client that disconnects stops the work for
    its answer (LLM generation included)."""
    return Response(await answer(serving, await request.body(), request.receive, metrics), media_type="application/json")


@alias_router.post(ALIAS, response_model=RecommendResponse, openapi_extra=_request_body_doc(), responses=_ERRORS)
async def recommend_alias(request: Request, serving: ServingDep, metrics: MetricsDep) -> Response:
    """The same as POST /v1/recommend (the route's first name, kept for the clients that use it)."""
    return await recommend(request, serving, metrics)


def parse_request(body: bytes) -> RecommendRequest:
    try:
        return RecommendRequest.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["event"].encode() + b"\ndata: " + orjson.dumps(event["data"]) + b"\n\n"


_STREAM_DOC = """Server-sent events: `ranking` (the answer of POST /v1/recommend without explanations,
`explanation_status` "pending"), then for each item `explanation_delta` {item_id, text} pieces as the LLM
writes them and one `explanation` {item_id, text} with the checked final text (null if dropped: show the
final text, not the pieces), then `explanations_done` {status: ok | timeout | disabled | unavailable}.
`explain` in the body is ignored (streaming is for explanations). Bad input gets the same 4xx as
POST /v1/recommend, before the stream starts. Closing the connection stops generation."""


@router.post(
    "/recommend/stream",
    openapi_extra=_request_body_doc(),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": _STREAM_DOC}, **_ERRORS},
)
async def recommend_stream(request: Request, serving: ServingDep, metrics: MetricsDep) -> StreamingResponse:
    """The ranking at once, then each item's explanation as it is generated (server-sent events)."""
    events = await serving.recommend_stream(parse_request(await request.body()))

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events):  # closed with the response: generation stops
            async for event in events:
                yield _sse(event)

    return EventStream(
        body(), metrics, STREAM_PATH, media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )  # fmt: skip


class RecommendFastPath:
    """ASGI middleware that serves `POST /v1/recommend` (and its alias `POST /recommend`) itself and passes every other request on.

    It does what the framework path does for this route (body size limit, readiness, validation,
    error mapping, request metrics, holding the bundle generation, cancelling on disconnect) and nothing
    else. `acquire` returns the current bundle generation, held until `release()`, or None while the app
    starts or stops."""

    def __init__(
        self,
        app: ASGIApp,
        acquire: Callable[[], Generation | None],
        metrics: Metrics,
        body_limit: Callable[[], int],
    ) -> None:
        self.app = app
        self.acquire = acquire
        self.metrics = metrics
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        gen = self.acquire()
        extra: list[tuple[bytes, bytes]] = []
        try:
            if gen is None:
                raise NotReady("the service is starting or stopping: retry shortly")
            raw = await read_body(scope, receive, self.body_limit())
            status, payload = 200, await answer(gen.serving, raw, receive, self.metrics)
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as e:  # mapped to a JSON error, as the framework's handlers do
            status, body = error_status_and_body(e)
            payload = orjson.dumps(body)
            extra = [(k.lower().encode(), v.encode()) for k, v in error_headers(e).items()]
        finally:
            if gen is not None:
                gen.release()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.metrics.request_done(scope["path"], "POST", status, time.perf_counter() - start)
