"""Domain exceptions and their one mapping to HTTP. Messages tell the caller what to fix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}  # sent with the error response (WWW-Authenticate, Retry-After)


class InvalidHistory(ServiceError):
    """Empty, too long, unknown ids, or inconsistent timestamps."""

    status_code = 422
    code = "invalid_history"


class UnknownItems(InvalidHistory):
    code = "unknown_items"


class SessionNotFound(ServiceError):
    status_code = 404
    code = "session_not_found"


class ItemNotFound(ServiceError):
    status_code = 404
    code = "item_not_found"


class BodyTooLarge(ServiceError):
    status_code = 413
    code = "body_too_large"


class BodyTimeout(ServiceError):
    status_code = 408
    code = "body_timeout"


class StoreUnavailable(ServiceError):
    """The session store (Redis) cannot be reached; the request cannot be served without it."""

    status_code = 503
    code = "session_store_unavailable"


class BundleRefused(ServiceError):
    """A bundle offered for a swap failed verification; the current one keeps serving."""

    status_code = 409
    code = "bundle_refused"


class SwapInProgress(ServiceError):
    status_code = 409
    code = "swap_in_progress"


class NotReady(ServiceError):
    status_code = 503
    code = "not_ready"


class Unauthorized(ServiceError):
    """No API key, or one that is not configured."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="llm-seqrec"'})


class Forbidden(ServiceError):
    """A valid API key without the scope the route needs."""

    status_code = 403
    code = "forbidden"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON: " + str(err.get("ctx", {}).get("error", "parse error"))
            loc = "body"
        else:
            msg = str(err.get("msg", "invalid value"))
        problems.append({"field": loc, "message": msg})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return f"invalid request: {summary}", problems


def error_headers(exc: Exception) -> dict[str, str]:
    """Headers the error response carries (WWW-Authenticate, Retry-After, the framework's own); a copy."""
    return dict(getattr(exc, "headers", None) or {})


# the framework's own errors (routing, methods), in the same shape as the service's
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
_HTTP_HINTS = {
    404: "no such route: see /docs for the API",
    405: "method not allowed on this route: the Allow header lists the ones it takes",
}


def error_status_and_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The one mapping from an exception to (HTTP status, JSON body), shared by the FastAPI exception
    handlers and the ASGI fast path of POST /v1/recommend."""
    if isinstance(exc, ServiceError):
        return exc.status_code, error_body(exc.code, exc.message, exc.details)
    if isinstance(exc, RequestValidationError):
        message, problems = _validation_message(exc)
        return 422, error_body("invalid_request", message, problems)
    if isinstance(exc, HTTPException) and exc.status_code == 400:  # FastAPI: a body it could not decode
        return 422, error_body("invalid_request", f"request body is not valid JSON: {exc.detail}")
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        hint = _HTTP_HINTS.get(exc.status_code, str(exc.detail))
        return exc.status_code, error_body(code, hint)
    logger.exception("unhandled error", exc_info=exc)
    return 500, error_body("internal", "internal error; see the service log")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path. Starlette's 405 names only the first route that matched
    the path, so a path served by several routes (GET and DELETE /v1/sessions/{id}) got a wrong Allow."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "OPTIONS-PROBE"})
        if match == Match.PARTIAL and getattr(route, "methods", None):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    status, body = error_status_and_body(exc)
    headers = error_headers(exc)
    if status == 405:
        headers["Allow"] = allowed_methods(request)
    return JSONResponse(body, status_code=status, headers=headers or None)


def register_error_handlers(app: FastAPI) -> None:
    for exc_type in (ServiceError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(exc_type, _handle)
