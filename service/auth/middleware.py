"""Pure-ASGI middleware, outermost in the app: every request but the open paths is checked by the Guard
before anything else runs (the fast path of POST /v1/recommend, body reading, routing).

Refusals carry the service's one error body (service/errors.py) and their headers (WWW-Authenticate,
Retry-After). They are counted in seqrec_auth_rejected_total / seqrec_rate_limited_total, not in
seqrec_http_requests_total: they never reach a route.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.auth.guard import Guard
from service.auth.policy import requirement
from service.errors import NotReady, ServiceError, error_headers, error_status_and_body


async def send_error(send: Send, exc: ServiceError) -> None:
    status, body = error_status_and_body(exc)
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class AuthMiddleware:
    """`guard` returns the app's Guard, or None while the app starts or stops (then protected paths get
    503: the keys are not loaded yet, and nothing passes unchecked)."""

    def __init__(self, app: ASGIApp, guard: Callable[[], Guard | None]) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        need = requirement(scope["path"])
        guard = self.guard()
        if need == "open" or (guard is not None and not guard.enabled):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # websocket: the API has none, and this middleware authenticates HTTP only; refuse (policy violation)
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        try:
            if guard is None:
                raise NotReady("the service is starting or stopping: retry shortly")
            key = await guard.check(scope["headers"], need)
        except ServiceError as e:
            await send_error(send, e)
            return
        scope.setdefault("state", {})["api_key"] = key.name  # for handlers and logs: request.state.api_key
        await self.app(scope, receive, send)
